package ident

// SetCompare replaces the bcrypt comparison of s (tests count calls).
func SetCompare(s *Store, f func(hash, password []byte) error) { s.compare = f }

// DummyHash returns the hash unknown users are checked against.
func DummyHash(s *Store) []byte { return s.dummyHash() }
