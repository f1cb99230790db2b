package ident

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/airlock-registry/airlock/shared/storage"
)

// Marker groups (see the package comment).
const (
	groupUsers      = "authusers"  // <name>: userRec
	groupLease      = "authlease"  // <name>: the owner of the user's change lease
	groupTokens     = "authtokens" // <id>: tokenRec
	groupUserTokens = "authutok:"  // + <name>, <id>: tokenIndex
	groupLogins     = "authlogin:" // + <name>, "lock" and "slot/NN": failed logins
)

// Change leases (withLease).
const (
	leaseTTL  = 30 * time.Second
	leaseWait = 5 * time.Second
	pollEvery = 20 * time.Millisecond
)

// userRec is the Value of a user's marker (JSON).
type userRec struct {
	V int `json:"v"`
	// UID is random, new with every CreateUser: tokens record it, so a
	// token of a deleted user never works for a new user of the same name.
	UID     string   `json:"uid"`
	Hash    string   `json:"hash"` // bcrypt
	Roles   []string `json:"roles"`
	Created int64    `json:"created"` // Unix ms
	// Changed is when the password last changed (Unix ms; 0: at Created).
	Changed int64 `json:"changed,omitempty"`
	// PwID is random, new with every password: with UID it makes the
	// user's credentials epoch.
	PwID string `json:"pwid,omitempty"`
}

func (r userRec) user(name string) User {
	changed := r.Changed
	if changed == 0 {
		changed = r.Created
	}
	return User{Name: name, Roles: append([]string(nil), r.Roles...), Created: fromMillis(r.Created), PasswordChanged: fromMillis(changed),
		Epoch: r.UID + "." + r.PwID}
}

func badName(op, name string) error {
	return fmt.Errorf("ident: %s: user name %.70q must match [a-z0-9][a-z0-9._-]{0,63}: %w", op, name, ErrInvalid)
}

// getRec reads a user's record (ErrNotFound when there is none).
func (s *Store) getRec(ctx context.Context, op, name string) (userRec, error) {
	m, err := s.meta.GetMarker(ctx, groupUsers, name)
	if errors.Is(err, storage.ErrNotFound) {
		return userRec{}, fmt.Errorf("ident: %s: user %q: %w", op, name, ErrNotFound)
	}
	if err != nil {
		return userRec{}, storeErr(op, err)
	}
	return decodeUser(op, m)
}

func decodeUser(op string, m storage.Marker) (userRec, error) {
	var r userRec
	if err := json.Unmarshal([]byte(m.Value), &r); err != nil || r.V != 1 || r.UID == "" {
		return userRec{}, fmt.Errorf("ident: %s: user %q: stored record is corrupt", op, m.Key)
	}
	return r, nil
}

// putRec overwrites a user's record.
func (s *Store) putRec(ctx context.Context, op, name string, r userRec) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("ident: %s: encode user: %w", op, err)
	}
	if err := s.meta.PutMarker(ctx, storage.Marker{Group: groupUsers, Key: name, Value: string(b), Until: forever}); err != nil {
		return sealed(op, err)
	}
	return nil
}

// hash returns the bcrypt hash of a checked password.
func (s *Store) hash(op, password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), s.cost)
	if err != nil {
		// bcrypt's errors (cost, length) never quote the password.
		return "", fmt.Errorf("ident: %s: hash password: %w", op, err)
	}
	return string(h), nil
}

// withLease runs fn holding the user's change lease: SetPassword, SetRoles,
// DeleteUser and CreateToken are serialised per user, so none of them
// undoes another (a password change never brings back a deleted user). A
// lease held by another request is waited for, up to leaseWait (ErrBusy);
// one left by a crash lapses after leaseTTL.
func (s *Store) withLease(ctx context.Context, op, name string, fn func() error) error {
	owner := randHex(16)
	deadline := time.Now().Add(leaseWait)
	for {
		err := s.meta.AcquireMarker(ctx, storage.Marker{Group: groupLease, Key: name, Value: owner, Until: s.now().Add(leaseTTL)})
		if err == nil {
			break
		}
		if !errors.Is(err, storage.ErrConflict) {
			return storeErr(op, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ident: %s: user %q: %w", op, name, ErrBusy)
		}
		if err := sleep(ctx, pollEvery); err != nil {
			return fmt.Errorf("ident: %s: %w", op, err)
		}
	}
	defer func() {
		_ = s.meta.ReleaseMarker(context.WithoutCancel(ctx), groupLease, name, owner)
	}()
	return fn()
}

// sleep waits d, or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// CreateUser creates a user with a password and roles. It fails with
// ErrExists when the name is taken (one conditional write: of concurrent
// creators of a name exactly one wins), ErrInvalid for a name not matching
// [a-z0-9][a-z0-9._-]{0,63} or a bad role, and ErrWeakPassword for a
// password breaking PasswordRules.
func (s *Store) CreateUser(ctx context.Context, name, password string, roles []string) error {
	const op = "create user"
	if !ValidName(name) {
		return badName(op, name)
	}
	if err := CheckPassword(name, password); err != nil {
		return err
	}
	roles, err := normRoles(roles)
	if err != nil {
		return fmt.Errorf("ident: %s %q: %w", op, name, err)
	}
	h, err := s.hash(op, password)
	if err != nil {
		return err
	}
	b, err := json.Marshal(userRec{V: 1, UID: randHex(16), PwID: randHex(8), Hash: h, Roles: roles, Created: toMillis(s.now())})
	if err != nil {
		return fmt.Errorf("ident: %s: encode user: %w", op, err)
	}
	// The Value is unique (random uid and salt), so the acquisition succeeds
	// only where no live user is.
	err = s.meta.AcquireMarker(ctx, storage.Marker{Group: groupUsers, Key: name, Value: string(b), Until: forever})
	if errors.Is(err, storage.ErrConflict) {
		return fmt.Errorf("ident: %s: user %q: %w", op, name, ErrExists)
	}
	if err != nil {
		return sealed(op, err)
	}
	return nil
}

// Bootstrap creates the first administrator: user name with role "admin",
// only when no user of that name exists (an existing one is never changed,
// whatever its password or roles). created tells whether it was created.
// It reads before it hashes, so calling it on every start is cheap.
func (s *Store) Bootstrap(ctx context.Context, name, password string) (created bool, err error) {
	if !ValidName(name) {
		return false, badName("bootstrap", name)
	}
	if _, err := s.getRec(ctx, "bootstrap", name); err == nil {
		return false, nil
	} else if !errors.Is(err, ErrNotFound) {
		return false, err
	}
	err = s.CreateUser(ctx, name, password, []string{"admin"})
	if errors.Is(err, ErrExists) {
		return false, nil
	}
	return err == nil, err
}

// SetPassword replaces a user's password (ErrNotFound, ErrWeakPassword).
// It also clears the name's failed logins and lock (an administrator
// resetting a password unlocks the user). API tokens stay valid.
func (s *Store) SetPassword(ctx context.Context, name, password string) error {
	const op = "set password"
	if !ValidName(name) {
		return badName(op, name)
	}
	if err := CheckPassword(name, password); err != nil {
		return err
	}
	h, err := s.hash(op, password)
	if err != nil {
		return err
	}
	err = s.withLease(ctx, op, name, func() error {
		r, err := s.getRec(ctx, op, name)
		if err != nil {
			return err
		}
		r.Hash, r.Changed, r.PwID = h, toMillis(s.now()), randHex(8)
		return s.putRec(ctx, op, name, r)
	})
	if err != nil {
		return err
	}
	s.clearLogins(context.WithoutCancel(ctx), name)
	return nil
}

// SetRoles replaces a user's roles (stored sorted, without duplicates;
// ErrNotFound, ErrInvalid).
func (s *Store) SetRoles(ctx context.Context, name string, roles []string) error {
	const op = "set roles"
	if !ValidName(name) {
		return badName(op, name)
	}
	roles, err := normRoles(roles)
	if err != nil {
		return fmt.Errorf("ident: %s %q: %w", op, name, err)
	}
	return s.withLease(ctx, op, name, func() error {
		r, err := s.getRec(ctx, op, name)
		if err != nil {
			return err
		}
		r.Roles = roles
		return s.putRec(ctx, op, name, r)
	})
}

// GetUser returns a user, or ErrNotFound.
func (s *Store) GetUser(ctx context.Context, name string) (User, error) {
	if !ValidName(name) {
		return User{}, fmt.Errorf("ident: get user: %w", ErrNotFound)
	}
	r, err := s.getRec(ctx, "get user", name)
	if err != nil {
		return User{}, err
	}
	return r.user(name), nil
}

// DeleteUser removes a user and revokes all its API tokens (ErrNotFound
// when there is no such user). Tokens go first, so a DeleteUser that
// fails half way leaves the user, to be deleted again; and a token item
// that outlived its user would be refused anyway (its uid is the deleted
// user's).
func (s *Store) DeleteUser(ctx context.Context, name string) error {
	const op = "delete user"
	if !ValidName(name) {
		return fmt.Errorf("ident: %s: %w", op, ErrNotFound)
	}
	return s.withLease(ctx, op, name, func() error {
		r, err := s.getRec(ctx, op, name)
		if err != nil {
			return err
		}
		idx, err := s.listIndex(ctx, op, name)
		if err != nil {
			return err
		}
		for _, t := range idx {
			if t.UID != r.UID {
				continue // a token of a later user of the name (cannot happen under the lease)
			}
			if err := s.deleteToken(ctx, op, name, t.ID); err != nil {
				return err
			}
		}
		if err := s.meta.DeleteMarker(ctx, groupUsers, name); err != nil {
			return storeErr(op, err)
		}
		return nil
	})
}

// ListUsers returns every user, by name.
func (s *Store) ListUsers(ctx context.Context) ([]User, error) {
	const op = "list users"
	ms, err := s.meta.ListMarkers(ctx, groupUsers, 0)
	if err != nil {
		return nil, storeErr(op, err)
	}
	out := make([]User, 0, len(ms))
	for _, m := range ms {
		r, err := decodeUser(op, m)
		if err != nil {
			return nil, err
		}
		out = append(out, r.user(m.Key))
	}
	return out, nil
}
