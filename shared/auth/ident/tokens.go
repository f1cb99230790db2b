package ident

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/airlock-registry/airlock/shared/storage"
)

// API token secrets: TokenPrefix + id + "_" + random, both parts lower-case
// base32 without padding (canonical: what encoding the bytes gives back).
const (
	idBytes     = 10                                     // 80 bits: unique, not secret
	secretBytes = 32                                     // 256 bits of crypto/rand
	idLen       = (idBytes*8 + 4) / 5                    // 16
	randLen     = (secretBytes*8 + 4) / 5                // 52
	secretLen   = len(TokenPrefix) + idLen + 1 + randLen // 73
)

// tokenRec is the Value of a token's marker (authtokens/<id>), the one item
// Authenticate and TokenActive read.
type tokenRec struct {
	V       int    `json:"v"`
	User    string `json:"user"`
	UID     string `json:"uid"` // the user's uid when the token was made
	Name    string `json:"name"`
	SHA256  string `json:"sha256"` // hex SHA-256 of the whole secret
	Created int64  `json:"created"`
	Expires int64  `json:"expires"` // Unix ms; also the marker's Until
}

// tokenIndex is the Value of a token's listing item (authutok:<user>/<id>):
// everything but the hash.
type tokenIndex struct {
	V       int    `json:"v"`
	UID     string `json:"uid"`
	Name    string `json:"name"`
	Created int64  `json:"created"`
	Expires int64  `json:"expires"`

	ID string `json:"-"` // the marker's key
}

// canonical reports whether s is the b32 form of exactly n bytes.
func canonical(s string, n int) bool {
	b, err := b32.DecodeString(s)
	return err == nil && len(b) == n && b32.EncodeToString(b) == s
}

// validID reports whether id is a well-formed token id.
func validID(id string) bool { return len(id) == idLen && canonical(id, idBytes) }

// parseSecret returns the id of a well-formed API token secret
// ("alk_<16 base32>_<52 base32>", nothing else), without reading anything.
func parseSecret(secret string) (id string, ok bool) {
	if len(secret) != secretLen || secret[:len(TokenPrefix)] != TokenPrefix || secret[len(TokenPrefix)+idLen] != '_' {
		return "", false
	}
	id = secret[len(TokenPrefix) : len(TokenPrefix)+idLen]
	if !canonical(id, idBytes) || !canonical(secret[len(TokenPrefix)+idLen+1:], secretBytes) {
		return "", false
	}
	return id, true
}

func (t tokenIndex) token(user string) Token {
	return Token{ID: t.ID, User: user, Name: t.Name, Created: fromMillis(t.Created), Expires: fromMillis(t.Expires)}
}

// listIndex returns the live listing items of a user's tokens.
func (s *Store) listIndex(ctx context.Context, op, user string) ([]tokenIndex, error) {
	ms, err := s.meta.ListMarkers(ctx, groupUserTokens+user, 0)
	if err != nil {
		return nil, storeErr(op, err)
	}
	out := make([]tokenIndex, 0, len(ms))
	for _, m := range ms {
		var t tokenIndex
		if err := json.Unmarshal([]byte(m.Value), &t); err != nil || t.V != 1 {
			return nil, fmt.Errorf("ident: %s: token %q of %q: stored listing item is corrupt", op, m.Key, user)
		}
		t.ID = m.Key
		out = append(out, t)
	}
	return out, nil
}

// getToken reads a token's record (ErrNotFound when absent or expired).
func (s *Store) getToken(ctx context.Context, op, id string) (tokenRec, error) {
	m, err := s.meta.GetMarker(ctx, groupTokens, id)
	if errors.Is(err, storage.ErrNotFound) {
		return tokenRec{}, fmt.Errorf("ident: %s: token %q: %w", op, id, ErrNotFound)
	}
	if err != nil {
		return tokenRec{}, storeErr(op, err)
	}
	var t tokenRec
	if err := json.Unmarshal([]byte(m.Value), &t); err != nil || t.V != 1 {
		return tokenRec{}, fmt.Errorf("ident: %s: token %q: stored record is corrupt", op, id)
	}
	return t, nil
}

// deleteToken removes a token's record, then its listing item (both idempotent).
func (s *Store) deleteToken(ctx context.Context, op, user, id string) error {
	if err := s.meta.DeleteMarker(ctx, groupTokens, id); err != nil {
		return storeErr(op, err)
	}
	if err := s.meta.DeleteMarker(ctx, groupUserTokens+user, id); err != nil {
		return storeErr(op, err)
	}
	return nil
}

// CreateToken makes an API token for user, named name (1 to 64 bytes of
// UTF-8, no control characters), valid for ttl (MinTokenTTL to
// MaxTokenTTL). It returns the secret, "alk_<id>_<random>" — shown this
// once: only its SHA-256 is stored — and the token's description. A user
// has at most MaxTokensPerUser live tokens (ErrInvalid beyond).
func (s *Store) CreateToken(ctx context.Context, user, name string, ttl time.Duration) (secret string, t Token, err error) {
	const op = "create token"
	if !ValidName(user) {
		return "", Token{}, badName(op, user)
	}
	if !validTokenName(name) {
		return "", Token{}, fmt.Errorf("ident: %s: token name must be 1 to %d bytes of UTF-8 without control characters: %w", op, MaxTokenNameLen, ErrInvalid)
	}
	if ttl < MinTokenTTL || ttl > MaxTokenTTL {
		return "", Token{}, fmt.Errorf("ident: %s: ttl %s is not within %s and %s: %w", op, ttl, MinTokenTTL, MaxTokenTTL, ErrInvalid)
	}
	err = s.withLease(ctx, op, user, func() error {
		r, err := s.getRec(ctx, op, user)
		if err != nil {
			return err
		}
		idx, err := s.listIndex(ctx, op, user)
		if err != nil {
			return err
		}
		n := 0
		for _, x := range idx {
			if x.UID == r.UID {
				n++
			}
		}
		if n >= MaxTokensPerUser {
			return fmt.Errorf("ident: %s: user %q has %d tokens, revoke one first: %w", op, user, n, ErrInvalid)
		}
		now := s.now()
		exp := now.Add(ttl)
		for range 3 { // a new id when one is taken (80 random bits: never, in practice)
			id := randText(idBytes)
			sec := TokenPrefix + id + "_" + randText(secretBytes)
			sum := sha256.Sum256([]byte(sec))
			ix, _ := json.Marshal(tokenIndex{V: 1, UID: r.UID, Name: name, Created: toMillis(now), Expires: toMillis(exp)})
			rec, _ := json.Marshal(tokenRec{V: 1, User: user, UID: r.UID, Name: name, SHA256: hex.EncodeToString(sum[:]), Created: toMillis(now), Expires: toMillis(exp)})
			// The listing item first: a crash between the two writes leaves
			// a listed token that does not work (revocable, and expiring),
			// never a working token that nobody sees.
			err := s.meta.AcquireMarker(ctx, storage.Marker{Group: groupUserTokens + user, Key: id, Value: string(ix), Until: exp})
			if errors.Is(err, storage.ErrConflict) {
				continue
			}
			if err != nil {
				return storeErr(op, err)
			}
			err = s.meta.AcquireMarker(ctx, storage.Marker{Group: groupTokens, Key: id, Value: string(rec), Until: exp})
			if err != nil {
				_ = s.meta.DeleteMarker(context.WithoutCancel(ctx), groupUserTokens+user, id)
				if errors.Is(err, storage.ErrConflict) {
					continue
				}
				return sealed(op, err) // the record's Value holds the hash
			}
			secret = sec
			t = tokenIndex{ID: id, Name: name, Created: toMillis(now), Expires: toMillis(exp)}.token(user)
			return nil
		}
		return fmt.Errorf("ident: %s: no free token id", op)
	})
	if err != nil {
		return "", Token{}, err
	}
	return secret, t, nil
}

// ListTokens returns a user's live API tokens, oldest first (ErrNotFound
// when there is no such user). Expired and revoked tokens are not listed.
func (s *Store) ListTokens(ctx context.Context, user string) ([]Token, error) {
	const op = "list tokens"
	if !ValidName(user) {
		return nil, fmt.Errorf("ident: %s: %w", op, ErrNotFound)
	}
	r, err := s.getRec(ctx, op, user)
	if err != nil {
		return nil, err
	}
	idx, err := s.listIndex(ctx, op, user)
	if err != nil {
		return nil, err
	}
	out := make([]Token, 0, len(idx))
	for _, x := range idx {
		if x.UID == r.UID {
			out = append(out, x.token(user))
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// RevokeToken deletes one of user's API tokens; it stops working at once
// (ErrNotFound when user has no live token id: another user's token is
// never touched).
func (s *Store) RevokeToken(ctx context.Context, user, id string) error {
	const op = "revoke token"
	if !ValidName(user) || !validID(id) {
		return fmt.Errorf("ident: %s: %w", op, ErrNotFound)
	}
	found := false
	rec, err := s.getToken(ctx, op, id)
	switch {
	case err == nil && rec.User == user:
		if err := s.meta.DeleteMarker(ctx, groupTokens, id); err != nil {
			return storeErr(op, err)
		}
		found = true
	case err != nil && !errors.Is(err, ErrNotFound):
		return err
	}
	_, err = s.meta.GetMarker(ctx, groupUserTokens+user, id)
	switch {
	case err == nil:
		if err := s.meta.DeleteMarker(ctx, groupUserTokens+user, id); err != nil {
			return storeErr(op, err)
		}
		found = true
	case !errors.Is(err, storage.ErrNotFound):
		return storeErr(op, err)
	}
	if !found {
		return fmt.Errorf("ident: %s: token %q of %q: %w", op, id, user, ErrNotFound)
	}
	return nil
}

// TokenActive reports whether the API token id exists, has not expired nor
// been revoked, and its user still exists (the same user: not one created
// again under the name). A malformed id is simply not active.
func (s *Store) TokenActive(ctx context.Context, id string) (bool, error) {
	const op = "token active"
	if !validID(id) {
		return false, nil
	}
	rec, err := s.getToken(ctx, op, id)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !s.now().Before(fromMillis(rec.Expires)) || !ValidName(rec.User) {
		return false, nil
	}
	r, err := s.getRec(ctx, op, rec.User)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return r.UID == rec.UID, nil
}

// authToken checks an API token secret for user name (Authenticate).
// A malformed secret is refused without a read; every refusal is
// ErrBadCredentials.
func (s *Store) authToken(ctx context.Context, name, secret string) (User, error) {
	const op = "authenticate"
	id, ok := parseSecret(secret)
	if !ok || !ValidName(name) {
		return User{}, ErrBadCredentials
	}
	rec, err := s.getToken(ctx, op, id)
	if errors.Is(err, ErrNotFound) {
		return User{}, ErrBadCredentials
	}
	if err != nil {
		return User{}, err
	}
	sum := sha256.Sum256([]byte(secret))
	stored, herr := hex.DecodeString(rec.SHA256)
	match := herr == nil && subtle.ConstantTimeCompare(sum[:], stored) == 1
	if !match || rec.User != name || !s.now().Before(fromMillis(rec.Expires)) {
		return User{}, ErrBadCredentials
	}
	r, err := s.getRec(ctx, op, name)
	if errors.Is(err, ErrNotFound) {
		return User{}, ErrBadCredentials
	}
	if err != nil {
		return User{}, err
	}
	if subtle.ConstantTimeCompare([]byte(r.UID), []byte(rec.UID)) != 1 {
		return User{}, ErrBadCredentials
	}
	return r.user(name), nil
}
