package ident

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"

	"github.com/airlock-registry/airlock/shared/storage"
)

// Errors of the Store. Each is wrapped with the operation and the user or
// token named (never a password, a token secret or a hash); test with errors.Is.
var (
	// ErrNotFound: no such user (or token of that user).
	ErrNotFound = errors.New("not found")
	// ErrExists: CreateUser of a name that is taken.
	ErrExists = errors.New("already exists")
	// ErrWeakPassword: a password refused by the rules (PasswordRules); the
	// wrapping error says which rule, never the password.
	ErrWeakPassword = errors.New("weak password")
	// ErrInvalid: a malformed argument (user name, role, token name, ttl).
	ErrInvalid = errors.New("invalid argument")
	// ErrBadCredentials is what Authenticate returns for every refused login
	// that is not a lock: unknown user, wrong password, malformed, unknown,
	// revoked or expired token, token of another user. It is returned as is
	// (not wrapped), so all of these read exactly alike.
	ErrBadCredentials = errors.New("ident: bad credentials")
	// ErrBusy: another request held the user's change lease for longer than
	// a mutation waits (a few seconds); retry later.
	ErrBusy = errors.New("user is being changed by another request; retry")
)

// LockedError is returned by Authenticate instead of checking a password
// while the user name is locked after too many failed logins (or, rarely,
// while Options.MaxFailures attempts for it are in flight for seconds).
// Callers answer it like bad credentials (401 or 429), with RetryAfter as
// the Retry-After header, rounded up to seconds.
type LockedError struct {
	// RetryAfter is how long the lock still lasts.
	RetryAfter time.Duration
}

// Error says that logins are locked and for how long (whole seconds, rounded up).
func (e *LockedError) Error() string {
	return fmt.Sprintf("ident: too many failed logins: locked, retry in %ds", int64(math.Ceil(e.RetryAfter.Seconds())))
}

// Defaults of Options.
const (
	DefaultBcryptCost  = 10
	DefaultMaxFailures = 5
	DefaultWindow      = 15 * time.Minute
	DefaultLock        = time.Minute
	DefaultMaxLock     = 15 * time.Minute
)

// Limits of names, passwords and tokens.
const (
	// MaxNameLen is the longest user name, in bytes ([a-z0-9][a-z0-9._-]{0,63}).
	MaxNameLen = 64
	// MinPasswordChars is the shortest password, in characters (Unicode code points).
	MinPasswordChars = 12
	// MaxPasswordBytes is the longest password, in bytes of UTF-8: bcrypt
	// reads only the first 72 bytes, so longer ones are refused rather than
	// silently truncated.
	MaxPasswordBytes = 72
	// MaxRoles is the most roles a user has.
	MaxRoles = 32
	// MaxTokenNameLen is the longest token name, in bytes.
	MaxTokenNameLen = 64
	// MaxTokensPerUser is the most live API tokens a user has at once.
	MaxTokensPerUser = 100
	// MinTokenTTL and MaxTokenTTL bound CreateToken's ttl.
	MinTokenTTL = time.Second
	MaxTokenTTL = 10 * 365 * 24 * time.Hour
	// TokenPrefix starts every API token secret; passwords may not start with it.
	TokenPrefix = "alk_"
)

// forever is the Until of markers that must not expire (users): markers
// always expire, so "never" is the year 2200.
var forever = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)

// User is a user as returned by the Store. It never holds the password hash.
type User struct {
	Name string
	// Roles are sorted and without duplicates.
	Roles   []string
	Created time.Time
	// PasswordChanged is when the password was last set (Created at first).
	PasswordChanged time.Time
	// Epoch identifies the user's current credentials: it changes when the
	// password changes and differs between a deleted user and a new one of
	// the same name (opaque; refresh tokens carry it).
	Epoch string
}

// HasRole reports whether u has role r.
func (u User) HasRole(r string) bool {
	for _, x := range u.Roles {
		if x == r {
			return true
		}
	}
	return false
}

// Token is an API token as returned by the Store. It never holds the secret
// (shown once, by CreateToken) nor its hash.
type Token struct {
	// ID is public: it is part of the secret and names the token in listings and revocations.
	ID      string
	User    string
	Name    string
	Created time.Time
	Expires time.Time
}

// Options configure New; zero fields take the defaults.
type Options struct {
	// Now is the clock of every expiry written and checked (default
	// time.Now). It should be the store's clock too: the store decides
	// which markers are live.
	Now func() time.Time
	// BcryptCost is the cost of new password hashes (default 10; clamped to
	// bcrypt's 4..31). Existing hashes keep the cost they were made with.
	BcryptCost int
	// MaxFailures is how many failed password logins within Window lock a
	// user name (default 5).
	MaxFailures int
	// Window is how long a failed login counts (default 15m).
	Window time.Duration
	// Lock is the first lock's duration (default 1m); each further lock
	// of the same name that starts within Window of the previous one's end
	// lasts twice as long, up to MaxLock.
	Lock time.Duration
	// MaxLock caps the doubling locks (default 15m).
	MaxLock time.Duration
}

// Store keeps users and API tokens as markers of a storage.ProxyMetadata
// (see the package comment for the item layout). It is safe for concurrent
// use, also by several processes on one table.
type Store struct {
	meta        storage.ProxyMetadata
	now         func() time.Time
	cost        int
	maxFailures int
	window      time.Duration
	lock        time.Duration
	maxLock     time.Duration

	// compare checks a password against a bcrypt hash (tests count calls).
	compare func(hash, password []byte) error

	dummyOnce sync.Once
	dummy     []byte // bcrypt hash of a random password, for unknown users
}

// New returns a Store on meta.
func New(meta storage.ProxyMetadata, o Options) *Store {
	s := &Store{
		meta:        meta,
		now:         o.Now,
		cost:        o.BcryptCost,
		maxFailures: o.MaxFailures,
		window:      o.Window,
		lock:        o.Lock,
		maxLock:     o.MaxLock,
		compare:     bcrypt.CompareHashAndPassword,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.cost <= 0 {
		s.cost = DefaultBcryptCost
	}
	s.cost = min(max(s.cost, bcrypt.MinCost), bcrypt.MaxCost)
	if s.maxFailures <= 0 {
		s.maxFailures = DefaultMaxFailures
	}
	s.maxFailures = min(s.maxFailures, maxSlots)
	if s.window <= 0 {
		s.window = DefaultWindow
	}
	if s.lock <= 0 {
		s.lock = DefaultLock
	}
	if s.maxLock <= 0 {
		s.maxLock = DefaultMaxLock
	}
	s.maxLock = max(s.maxLock, s.lock)
	return s
}

// dummyHash returns the hash unknown users are checked against: a bcrypt
// hash of random bytes at the configured cost, made on first use.
func (s *Store) dummyHash() []byte {
	s.dummyOnce.Do(func() {
		pw := make([]byte, 32)
		_, _ = rand.Read(pw)
		h, err := bcrypt.GenerateFromPassword([]byte(hex.EncodeToString(pw)), s.cost)
		if err != nil {
			panic("ident: bcrypt: " + err.Error()) // cannot happen: valid cost and length
		}
		s.dummy = h
	})
	return s.dummy
}

// ValidName reports whether name is a valid user name:
// [a-z0-9][a-z0-9._-]{0,63}.
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > MaxNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// validRole reports whether r is a valid role: [a-z0-9][a-z0-9._:-]{0,63}.
func validRole(r string) bool {
	if len(r) == 0 || len(r) > 64 {
		return false
	}
	for i := 0; i < len(r); i++ {
		c := r[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-' || c == ':'):
		default:
			return false
		}
	}
	return true
}

// normRoles checks roles and returns them sorted without duplicates.
func normRoles(roles []string) ([]string, error) {
	out := make([]string, 0, len(roles))
	for _, r := range roles {
		if !validRole(r) {
			return nil, fmt.Errorf("role %.70q must match [a-z0-9][a-z0-9._:-]{0,63}: %w", r, ErrInvalid)
		}
		out = append(out, r)
	}
	sort.Strings(out)
	out = compact(out)
	if len(out) > MaxRoles {
		return nil, fmt.Errorf("more than %d roles: %w", MaxRoles, ErrInvalid)
	}
	return out, nil
}

func compact(s []string) []string {
	out := s[:0]
	for i, x := range s {
		if i == 0 || x != s[i-1] {
			out = append(out, x)
		}
	}
	return out
}

// PasswordRules says what CheckPassword requires, for user interfaces.
const PasswordRules = "at least 12 characters, at most 72 bytes (UTF-8), not starting with \"alk_\", not the user name"

// CheckPassword returns nil when password is acceptable for user name, and
// otherwise an error wrapping ErrWeakPassword that says which rule failed
// (never the password, nor its length).
func CheckPassword(name, password string) error {
	weak := func(why string) error { return fmt.Errorf("ident: %w: %s", ErrWeakPassword, why) }
	switch {
	case !utf8.ValidString(password):
		return weak("the password must be valid UTF-8")
	case utf8.RuneCountInString(password) < MinPasswordChars:
		return weak(fmt.Sprintf("the password must have at least %d characters", MinPasswordChars))
	case len(password) > MaxPasswordBytes:
		return weak(fmt.Sprintf("the password must have at most %d bytes (bcrypt's limit; fewer characters when they are not ASCII)", MaxPasswordBytes))
	case strings.HasPrefix(password, TokenPrefix):
		return weak(fmt.Sprintf("the password must not start with %q, the prefix of API tokens", TokenPrefix))
	case strings.EqualFold(password, name):
		return weak("the password must not be the user name")
	}
	return nil
}

// validTokenName reports whether n is a valid token name: 1 to 64 bytes of
// UTF-8 without control characters.
func validTokenName(n string) bool {
	if n == "" || len(n) > MaxTokenNameLen || !utf8.ValidString(n) {
		return false
	}
	for _, r := range n {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// b32 is lower-case base32 without padding: token ids and secrets.
var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// randText returns n random bytes (crypto/rand) in b32.
func randText(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail
	return b32.EncodeToString(b)
}

// randHex returns n random bytes (crypto/rand) in hex.
func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func toMillis(t time.Time) int64    { return t.UnixMilli() }
func fromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }
