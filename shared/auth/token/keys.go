package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/airlock-registry/airlock/shared/storage"
)

// Layout of the keys in the store (see the package comment, Key storage).
const (
	// keyGroup is the marker group holding the signing keys.
	keyGroup = "authkeys"
	// genPrefix starts the key of a generation slot: gen/<10 digits>, whose
	// Value is the kid of the generation's key. Slots are won with
	// AcquireMarker: the one conditional write deciding races.
	genPrefix = "gen/"
	// keyPrefix starts the key of a key item: key/<kid>, whose Value is a
	// keyRecord (JSON), written with PutMarker before its slot is taken.
	keyPrefix = "key/"
	// genDigits is the width of the zero-padded generation number (key
	// order is generation order).
	genDigits = 10
	// maxGen keeps generation numbers within genDigits.
	maxGen = 9_999_999_999
)

// Timing of the key life cycle.
const (
	// keyRefresh is the shortest interval between two reads of the keys by
	// one Service (after the one of NewService): an unknown kid, or an
	// Issue finding its keys older than this, triggers a read at most this
	// often.
	keyRefresh = time.Minute
	// activationDelay is how long a key added by Rotate is published (valid
	// for verification) before any Service signs with it: longer than
	// keyRefresh twice, so that every Service has read it, or may read it,
	// before the first token it signed arrives (see the package comment).
	activationDelay = 2 * keyRefresh
	// orphanAge is the age after which Rotate deletes a key item no
	// generation slot refers to (a creator that lost its race and crashed
	// before deleting it).
	orphanAge = time.Hour
	// farFutureYears is the lifetime of the markers of a key not yet
	// retired: markers must expire, the key must not.
	farFutureYears = 100
)

// keyRecord is the Value of a key item (key/<kid>).
type keyRecord struct {
	// V is the record's format version (1).
	V int `json:"v"`
	// Kid is the key's id: the RFC 7638 JWK thumbprint of its public key.
	Kid string `json:"kid"`
	// Alg is "ES256".
	Alg string `json:"alg"`
	// Key is the private key, PKCS #8 DER, standard base64.
	Key string `json:"key"`
	// Created is when the key was generated; a rotated-in key signs from
	// Created+activationDelay on.
	Created time.Time `json:"created"`
}

// key is one key known to a Service.
type key struct {
	kid  string
	gen  int               // generation; 0 for an operator-provided key
	priv *ecdsa.PrivateKey // nil for a verification-only key
	pub  *ecdsa.PublicKey

	created  time.Time
	activate time.Time // signs from then on (zero: from the start)
	retire   time.Time // verifies until then, excluded (zero: forever)

	// The key's two markers as read (for shortening their Until when the key
	// retires).
	genUntil, keyUntil time.Time
	keyValue           string
}

// live tells whether k still verifies at now.
func (k *key) live(now time.Time) bool { return k.retire.IsZero() || now.Before(k.retire) }

// keySet is an immutable snapshot of the keys: replaced whole on reload.
type keySet struct {
	list  []*key // stored keys by generation, or operator keys in PEM order
	byKid map[string]*key
	fixed *key // the signing key of operator-provided keys; nil otherwise
}

func newKeySet(list []*key, fixed *key) *keySet {
	ks := &keySet{list: list, byKid: make(map[string]*key, len(list)), fixed: fixed}
	for _, k := range list {
		ks.byKid[k.kid] = k
	}
	return ks
}

// signer returns the key to sign with at now: the operator's, or the newest
// stored key that is active, or nil when there is none.
func (ks *keySet) signer(now time.Time) *key {
	if ks.fixed != nil {
		return ks.fixed
	}
	for i := len(ks.list) - 1; i >= 0; i-- {
		if k := ks.list[i]; !now.Before(k.activate) && k.live(now) && k.priv != nil {
			return k
		}
	}
	return nil
}

// verifier returns the key of kid if it still verifies at now; retired
// tells a known key that has retired from an unknown kid.
func (ks *keySet) verifier(kid string, now time.Time) (k *key, retired bool) {
	k = ks.byKid[kid]
	if k == nil {
		return nil, false
	}
	if !k.live(now) {
		return nil, true
	}
	return k, false
}

// farFuture is the Until of the markers of a key that has not retired.
func farFuture(now time.Time) time.Time { return now.AddDate(farFutureYears, 0, 0) }

func genKey(gen int) string { return fmt.Sprintf("%s%0*d", genPrefix, genDigits, gen) }

// kidOf returns the RFC 7638 JWK thumbprint of a P-256 public key: SHA-256
// of {"crv":"P-256","kty":"EC","x":…,"y":…}, base64url without padding.
func kidOf(pub *ecdsa.PublicKey) (string, error) {
	if pub.Curve != elliptic.P256() {
		return "", errors.New("not a P-256 key")
	}
	b, err := pub.Bytes()
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	jwk := `{"crv":"P-256","kty":"EC","x":"` + enc.EncodeToString(b[1:33]) + `","y":"` + enc.EncodeToString(b[33:65]) + `"}`
	sum := sha256.Sum256([]byte(jwk))
	return enc.EncodeToString(sum[:]), nil
}

// kidLen is the length of a kid (a base64url SHA-256).
const kidLen = 43

// newKey generates a key and its record.
func newKey(now time.Time) (*key, string, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", fmt.Errorf("token: generate key: %w", err)
	}
	kid, err := kidOf(&priv.PublicKey)
	if err != nil {
		return nil, "", fmt.Errorf("token: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, "", fmt.Errorf("token: encode key: %w", err)
	}
	rec := keyRecord{V: 1, Kid: kid, Alg: alg, Key: base64.StdEncoding.EncodeToString(der), Created: now.UTC()}
	v, err := json.Marshal(rec)
	if err != nil {
		return nil, "", fmt.Errorf("token: encode key: %w", err)
	}
	return &key{kid: kid, priv: priv, pub: &priv.PublicKey, created: rec.Created}, string(v), nil
}

// parseRecord decodes a key item's Value. Errors name the kid only, never
// the key.
func parseRecord(value string) (*key, error) {
	var rec keyRecord
	if err := json.Unmarshal([]byte(value), &rec); err != nil {
		return nil, errors.New("undecodable record")
	}
	if rec.V != 1 || rec.Alg != alg {
		return nil, fmt.Errorf("key %.43s: unsupported record (v %d, alg %.10q)", rec.Kid, rec.V, rec.Alg)
	}
	der, err := base64.StdEncoding.DecodeString(rec.Key)
	if err != nil {
		return nil, fmt.Errorf("key %.43s: undecodable key", rec.Kid)
	}
	pk, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("key %.43s: unparsable key", rec.Kid)
	}
	priv, ok := pk.(*ecdsa.PrivateKey)
	if !ok || priv.Curve != elliptic.P256() {
		return nil, fmt.Errorf("key %.43s: not an ECDSA P-256 key", rec.Kid)
	}
	kid, err := kidOf(&priv.PublicKey)
	if err != nil || kid != rec.Kid {
		return nil, fmt.Errorf("key %.43s: kid is not the key's thumbprint", rec.Kid)
	}
	return &key{kid: kid, priv: priv, pub: &priv.PublicKey, created: rec.Created}, nil
}

// stored is the content of the key group as read by one ListMarkers.
type stored struct {
	keys    []*key                    // usable generations, by generation
	maxGen  int                       // highest generation slot, usable or not
	dangles map[string]string         // slot key → kid of slots whose key item is missing
	orphans map[string]storage.Marker // kid → key items no slot refers to
}

// load reads the key group (one ListMarkers) and computes every key's
// activation and retirement.
func (s *Service) load(ctx context.Context) (*stored, error) {
	ms, err := s.store.ListMarkers(ctx, keyGroup, 0)
	if err != nil {
		return nil, fmt.Errorf("token: read keys: %w", err)
	}
	type slot struct {
		gen   int
		kid   string
		until time.Time
		key   string
	}
	var slots []slot
	items := map[string]storage.Marker{}
	for _, m := range ms {
		switch {
		case strings.HasPrefix(m.Key, genPrefix):
			n, err := strconv.Atoi(strings.TrimPrefix(m.Key, genPrefix))
			if err != nil || n <= 0 || len(m.Key) != len(genPrefix)+genDigits {
				return nil, fmt.Errorf("token: read keys: bad generation slot %.40q", m.Key)
			}
			slots = append(slots, slot{gen: n, kid: m.Value, until: m.Until, key: m.Key})
		case strings.HasPrefix(m.Key, keyPrefix):
			items[strings.TrimPrefix(m.Key, keyPrefix)] = m
		}
		// Other keys are left to future versions.
	}
	slices.SortFunc(slots, func(a, b slot) int { return a.gen - b.gen })
	st := &stored{dangles: map[string]string{}, orphans: map[string]storage.Marker{}}
	used := map[string]bool{}
	for _, sl := range slots {
		st.maxGen = max(st.maxGen, sl.gen)
		m, ok := items[sl.kid]
		if !ok || used[sl.kid] {
			st.dangles[sl.key] = sl.kid
			continue
		}
		used[sl.kid] = true
		k, err := parseRecord(m.Value)
		if err != nil {
			return nil, fmt.Errorf("token: read keys: generation %d: %w", sl.gen, err)
		}
		k.gen, k.genUntil, k.keyUntil, k.keyValue = sl.gen, sl.until, m.Until, m.Value
		st.keys = append(st.keys, k)
	}
	for kid, m := range items {
		if !used[kid] {
			st.orphans[kid] = m
		}
	}
	s.schedule(st.keys)
	return st, nil
}

// schedule computes activation and retirement of keys (by generation): the
// oldest key signs from the start; every later one from its creation plus
// activationDelay (never before its predecessor); a key retires when its
// successor has been active for the longest token lifetime plus margins,
// or when its markers expire, whichever comes first.
func (s *Service) schedule(keys []*key) {
	for i, k := range keys {
		k.activate = time.Time{}
		if i > 0 {
			k.activate = k.created.Add(activationDelay)
			if prev := keys[i-1].activate; k.activate.Before(prev) {
				k.activate = prev
			}
		}
	}
	for i, k := range keys {
		k.retire = k.genUntil
		if k.keyUntil.Before(k.retire) {
			k.retire = k.keyUntil
		}
		if i+1 < len(keys) {
			if r := keys[i+1].activate.Add(s.grace); r.Before(k.retire) {
				k.retire = r
			}
		}
	}
}

// install makes st's keys the Service's keys.
func (s *Service) install(st *stored, now time.Time) {
	s.keys.Store(newKeySet(st.keys, nil))
	s.loaded.Store(now.UnixNano())
}

// reload reads the keys again unless a read was tried less than keyRefresh
// ago (or force); it tells whether it read them. Store errors keep the
// keys cached before.
func (s *Service) reload(ctx context.Context, force bool) (bool, error) {
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	now := s.now()
	if !force && now.Sub(s.tried) < keyRefresh {
		return false, nil
	}
	s.tried = now
	st, err := s.load(ctx)
	if err != nil {
		return true, err
	}
	s.install(st, now)
	return true, nil
}

// loadOrCreate reads the keys and, when there is none, creates the first
// one (NewService, and Issue after every key was deleted).
func (s *Service) loadOrCreate(ctx context.Context) error {
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	for range 4 {
		now := s.now()
		s.tried = now
		st, err := s.load(ctx)
		if err != nil {
			return err
		}
		if len(st.keys) > 0 {
			s.install(st, now)
			return nil
		}
		if _, err := s.create(ctx, st.maxGen+1); err != nil {
			return err
		}
		// Won or lost, read the winner's key back.
	}
	return errors.New("token: could not create a signing key: every attempt lost a race")
}

// create generates a key, stores its item and takes generation slot gen for
// it. It returns the key, or nil when another Service took the slot first
// (then the item is deleted again).
func (s *Service) create(ctx context.Context, gen int) (*key, error) {
	if gen > maxGen {
		return nil, errors.New("token: create key: generation numbers exhausted")
	}
	now := s.now()
	k, value, err := newKey(now)
	if err != nil {
		return nil, err
	}
	until := farFuture(now)
	// The key item first, so that a slot never refers to a missing item.
	// PutMarker's errors never include the value (the private key).
	if err := s.store.PutMarker(ctx, storage.Marker{Group: keyGroup, Key: keyPrefix + k.kid, Value: value, Until: until}); err != nil {
		return nil, fmt.Errorf("token: store key: %w", err)
	}
	err = s.store.AcquireMarker(ctx, storage.Marker{Group: keyGroup, Key: genKey(gen), Value: k.kid, Until: until})
	if errors.Is(err, storage.ErrConflict) {
		// Another Service took the slot: its key is the one.
		_ = s.store.DeleteMarker(ctx, keyGroup, keyPrefix+k.kid)
		return nil, nil
	}
	if err != nil {
		// The slot may have been taken nonetheless: keep the item (Rotate
		// deletes it if it stays an orphan).
		return nil, fmt.Errorf("token: take generation %d: %w", gen, err)
	}
	k.gen, k.genUntil, k.keyUntil, k.keyValue = gen, until, until, value
	return k, nil
}

// Rotate adds a new signing key. It is published at once (every Service
// verifies its tokens once it has read it) and signs from two minutes on
// (activationDelay), on every Service, so that no token it signs meets a
// Service that has not read it and may not read it yet. The previous key
// keeps verifying until every token it may have signed has expired (the
// longer of Lifetime and RefreshLifetime, plus a minute and the leeway after
// the new key's activation), then it is dropped; its markers are given that
// expiry. When Services rotate at once, one new key is added and every
// Rotate succeeds. Rotate also deletes what crashed writers may have left
// (key items no generation refers to, generations whose key is gone).
// Rotate fails with operator-provided keys (Options.PEM): change the PEM.
func (s *Service) Rotate(ctx context.Context) error {
	if s.store == nil {
		return errors.New("token: rotate: keys are operator-provided (Options.PEM); change the PEM to rotate")
	}
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	now := s.now()
	s.tried = now
	st, err := s.load(ctx)
	if err != nil {
		return err
	}
	k, err := s.create(ctx, st.maxGen+1)
	if err != nil {
		return err
	}
	if k == nil {
		// Another Service rotated since the read: its key is the new one.
		st, err = s.load(ctx)
		if err != nil {
			return err
		}
	} else {
		st.keys = append(st.keys, k)
		s.schedule(st.keys)
	}
	s.install(st, now)
	s.retireStored(ctx, st, now)
	return nil
}

// retireStored shortens the markers of retiring keys to their retirement
// and deletes leftovers, best effort: verification enforces retirement by
// itself, and the next Rotate retries.
func (s *Service) retireStored(ctx context.Context, st *stored, now time.Time) {
	for _, k := range st.keys {
		if k.retire.IsZero() {
			continue
		}
		until := k.retire
		if !until.After(now) {
			until = now.Add(time.Millisecond) // expiring now: markers need a future Until
		}
		if k.genUntil.After(until.Add(time.Second)) {
			_ = s.store.AcquireMarker(ctx, storage.Marker{Group: keyGroup, Key: genKey(k.gen), Value: k.kid, Until: until})
		}
		if k.keyUntil.After(until.Add(time.Second)) {
			_ = s.store.PutMarker(ctx, storage.Marker{Group: keyGroup, Key: keyPrefix + k.kid, Value: k.keyValue, Until: until})
		}
	}
	for slotKey, kid := range st.dangles {
		_ = s.store.ReleaseMarker(ctx, keyGroup, slotKey, kid)
	}
	for kid, m := range st.orphans {
		var rec keyRecord
		if json.Unmarshal([]byte(m.Value), &rec) == nil && now.Sub(rec.Created) < orphanAge {
			continue // perhaps a creator between its two writes
		}
		_ = s.store.DeleteMarker(ctx, keyGroup, keyPrefix+kid)
	}
}

// parsePEM reads operator-provided keys: EC PRIVATE KEY (SEC 1), PRIVATE
// KEY (PKCS #8) or PUBLIC KEY (PKIX) blocks of P-256 keys. The first private
// key signs; every key verifies. Errors never include key bytes.
func parsePEM(b []byte) (*keySet, error) {
	var list []*key
	var signer *key
	seen := map[string]bool{}
	for n := 1; ; n++ {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		var pub *ecdsa.PublicKey
		var priv *ecdsa.PrivateKey
		switch blk.Type {
		case "EC PRIVATE KEY":
			p, err := x509.ParseECPrivateKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("token: PEM block %d: unparsable EC private key", n)
			}
			priv = p
		case "PRIVATE KEY":
			p, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("token: PEM block %d: unparsable PKCS #8 private key", n)
			}
			ep, ok := p.(*ecdsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("token: PEM block %d: not an ECDSA key (ES256 needs P-256)", n)
			}
			priv = ep
		case "PUBLIC KEY":
			p, err := x509.ParsePKIXPublicKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("token: PEM block %d: unparsable public key", n)
			}
			ep, ok := p.(*ecdsa.PublicKey)
			if !ok {
				return nil, fmt.Errorf("token: PEM block %d: not an ECDSA key (ES256 needs P-256)", n)
			}
			pub = ep
		default:
			return nil, fmt.Errorf("token: PEM block %d: unsupported type %.30q", n, blk.Type)
		}
		if priv != nil {
			pub = &priv.PublicKey
		}
		kid, err := kidOf(pub)
		if err != nil {
			return nil, fmt.Errorf("token: PEM block %d: not a P-256 key (ES256)", n)
		}
		if seen[kid] {
			continue
		}
		seen[kid] = true
		k := &key{kid: kid, priv: priv, pub: pub}
		list = append(list, k)
		if signer == nil && priv != nil {
			signer = k
		}
	}
	if len(strings.TrimSpace(string(b))) > 0 {
		return nil, errors.New("token: PEM: trailing data that is not a PEM block")
	}
	if signer == nil {
		return nil, errors.New("token: PEM: no private key (EC PRIVATE KEY or PRIVATE KEY block)")
	}
	return newKeySet(list, signer), nil
}
