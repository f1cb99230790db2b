package ident

import (
	"context"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/airlock-registry/airlock/shared/storage"
)

// Failed-login bookkeeping (group authlogin:<name>; see the package comment).
const (
	lockKey    = "lock"
	slotPrefix = "slot/"
	// maxSlots caps Options.MaxFailures.
	maxSlots = 99
	// slotPending and slotFailed are a slot marker's Count: an attempt in
	// flight, and a failed one.
	slotPending = 0
	slotFailed  = 1
	// pendingTTL bounds a slot held by an attempt that crashed.
	pendingTTL = 30 * time.Second
	// slotWait is how long an attempt waits for a free slot while all are
	// held by attempts in flight (then: LockedError{RetryAfter: slotRetry}).
	slotWait  = 3 * time.Second
	slotRetry = time.Second
)

func slotKey(i int) string { return fmt.Sprintf("%s%02d", slotPrefix, i) }

// attempt is the slot a password check holds.
type attempt struct {
	group, key, value string
	// seen is what the group held when the slot was taken: failed slots and
	// the lock marker, cleared by a success.
	failed []storage.Marker
	lock   *storage.Marker
}

// Authenticate checks secret, a password or an API token ("alk_…") of user
// name, and returns the user. Every refusal is ErrBadCredentials, the same
// for an unknown user, a wrong password, and a malformed, unknown,
// revoked, expired or other user's token; a store failure is another error.
//
// Passwords: an unknown name costs a bcrypt comparison like a known one
// (against a dummy hash), and goes through the same failed-login counting,
// so neither timing nor locking tells which names exist. After
// Options.MaxFailures failures within Options.Window the name is locked:
// every password login, even with the right password, gets *LockedError
// until the lock ends; other names are unaffected; a success clears the
// count. API tokens are neither counted nor locked: 256 random bits cannot
// be guessed, and a lock would let anyone who knows a user name stop its
// automation.
func (s *Store) Authenticate(ctx context.Context, name, secret string) (User, error) {
	if strings.HasPrefix(secret, TokenPrefix) {
		// Passwords cannot start with the prefix (CheckPassword).
		return s.authToken(ctx, name, secret)
	}
	dummy := s.dummyHash() // first use pays for it, whoever the user
	if !ValidName(name) || len(secret) > MaxPasswordBytes {
		// No such user can exist, no such password either (bcrypt would
		// compare only its first 72 bytes): refused, at the same cost.
		_ = s.compare(dummy, []byte(secret))
		return User{}, ErrBadCredentials
	}
	a, err := s.beginAttempt(ctx, name)
	if err != nil {
		return User{}, err
	}
	hash := dummy
	r, err := s.getRec(ctx, "authenticate", name)
	found := err == nil
	if found {
		hash = []byte(r.Hash)
	} else if !errors.Is(err, ErrNotFound) {
		s.endAttempt(ctx, a)
		return User{}, err
	}
	ok := s.compare(hash, []byte(secret)) == nil && found
	if !ok {
		s.failAttempt(ctx, a)
		return User{}, ErrBadCredentials
	}
	s.succeedAttempt(ctx, a)
	return r.user(name), nil
}

// beginAttempt takes a free slot for one password check of name (one
// ListMarkers, one AcquireMarker). Slots are MaxFailures: failed attempts
// keep theirs for Window, attempts in flight hold theirs until they end,
// so at most MaxFailures guesses ever get checked per name and window,
// however many requests race. When every slot holds a failure, the name
// gets locked; when all are in flight, the attempt waits for one.
func (s *Store) beginAttempt(ctx context.Context, name string) (attempt, error) {
	group := groupLogins + name
	deadline := time.Now().Add(slotWait)
	for {
		ms, err := s.meta.ListMarkers(ctx, group, 0)
		if err != nil {
			return attempt{}, storeErr("authenticate", err)
		}
		now := s.now()
		a := attempt{group: group}
		used := map[string]bool{}
		for _, m := range ms {
			switch {
			case m.Key == lockKey:
				m := m
				a.lock = &m
			case strings.HasPrefix(m.Key, slotPrefix):
				used[m.Key] = true
				if m.Count == slotFailed {
					a.failed = append(a.failed, m)
				}
			}
		}
		if until, ok := lockedUntil(a.lock); ok && now.Before(until) {
			return attempt{}, &LockedError{RetryAfter: until.Sub(now)}
		}
		if len(a.failed) >= s.maxFailures {
			until := s.engageLock(ctx, a, now)
			return attempt{}, &LockedError{RetryAfter: until.Sub(now)}
		}
		// Start at a random slot: racing attempts of one name mostly take
		// different slots at the first try instead of all contending for 01.
		first := mathrand.IntN(s.maxFailures)
		for j := 0; j < s.maxFailures; j++ {
			k := slotKey(1 + (first+j)%s.maxFailures)
			if used[k] {
				continue
			}
			v := randHex(12)
			err := s.meta.AcquireMarker(ctx, storage.Marker{Group: group, Key: k, Value: v, Count: slotPending, Until: now.Add(pendingTTL)})
			if err == nil {
				a.key, a.value = k, v
				return a, nil
			}
			if !errors.Is(err, storage.ErrConflict) {
				return attempt{}, storeErr("authenticate", err)
			}
		}
		if time.Now().After(deadline) {
			return attempt{}, &LockedError{RetryAfter: slotRetry}
		}
		if err := sleep(ctx, pollEvery); err != nil {
			return attempt{}, fmt.Errorf("ident: authenticate: %w", err)
		}
	}
}

// lockedUntil returns when the lock marker's lock ends.
func lockedUntil(m *storage.Marker) (time.Time, bool) {
	if m == nil {
		return time.Time{}, false
	}
	ms, err := strconv.ParseInt(m.Value, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return fromMillis(ms), true
}

// engageLock locks name for Lock, doubled for each lock before it whose
// marker is still live (up to MaxLock), and frees the failed slots, so
// that after the lock MaxFailures guesses are allowed again. The lock
// marker outlives the lock by Window: a lock within Window of the last
// one's end lasts longer. Racing engagers write the same level.
func (s *Store) engageLock(ctx context.Context, a attempt, now time.Time) time.Time {
	level := 1
	if a.lock != nil {
		level = a.lock.Count + 1
	}
	d := s.lock
	for i := 1; i < level && d < s.maxLock; i++ {
		d *= 2
	}
	d = min(d, s.maxLock)
	until := now.Add(d)
	ctx = context.WithoutCancel(ctx)
	// Best effort: a failed write leaves the failed slots, which lock again.
	if err := s.meta.PutMarker(ctx, storage.Marker{Group: a.group, Key: lockKey, Value: strconv.FormatInt(toMillis(until), 10), Count: level, Until: until.Add(s.window)}); err != nil {
		return until
	}
	for _, m := range a.failed {
		_ = s.meta.ReleaseMarker(ctx, a.group, m.Key, m.Value)
	}
	return until
}

// endAttempt frees the attempt's slot without counting it.
func (s *Store) endAttempt(ctx context.Context, a attempt) {
	_ = s.meta.ReleaseMarker(context.WithoutCancel(ctx), a.group, a.key, a.value)
}

// failAttempt keeps the attempt's slot as a failure for Window, and locks
// the name when that was the last free slot.
func (s *Store) failAttempt(ctx context.Context, a attempt) {
	ctx = context.WithoutCancel(ctx)
	now := s.now()
	// Same Value: the owner renewing, which replaces Count and Until.
	if err := s.meta.AcquireMarker(ctx, storage.Marker{Group: a.group, Key: a.key, Value: a.value, Count: slotFailed, Until: now.Add(s.window)}); err != nil {
		return
	}
	if len(a.failed)+1 < s.maxFailures {
		return // not the last slot (the next attempt locks if racing failures filled them)
	}
	ms, err := s.meta.ListMarkers(ctx, a.group, 0)
	if err != nil {
		return
	}
	b := attempt{group: a.group}
	for _, m := range ms {
		switch {
		case m.Key == lockKey:
			m := m
			b.lock = &m
		case strings.HasPrefix(m.Key, slotPrefix) && m.Count == slotFailed:
			b.failed = append(b.failed, m)
		}
	}
	if until, ok := lockedUntil(b.lock); ok && now.Before(until) {
		return // locked by a racing failure
	}
	if len(b.failed) >= s.maxFailures {
		s.engageLock(ctx, b, now)
	}
}

// succeedAttempt frees the attempt's slot and clears what the name's
// group held when the attempt began: failed slots and the lock marker
// (its level of doubling). Each is released on its Value, so markers
// written since (a lock engaged meanwhile) stay.
func (s *Store) succeedAttempt(ctx context.Context, a attempt) {
	ctx = context.WithoutCancel(ctx)
	_ = s.meta.ReleaseMarker(ctx, a.group, a.key, a.value)
	for _, m := range a.failed {
		_ = s.meta.ReleaseMarker(ctx, a.group, m.Key, m.Value)
	}
	if a.lock != nil {
		_ = s.meta.ReleaseMarker(ctx, a.group, lockKey, a.lock.Value)
	}
}

// clearLogins removes a name's failed logins and lock (SetPassword; best
// effort). Slots of attempts in flight stay.
func (s *Store) clearLogins(ctx context.Context, name string) {
	group := groupLogins + name
	ms, err := s.meta.ListMarkers(ctx, group, 0)
	if err != nil {
		return
	}
	for _, m := range ms {
		if m.Key == lockKey || m.Count == slotFailed {
			_ = s.meta.ReleaseMarker(ctx, group, m.Key, m.Value)
		}
	}
}
