package token

import (
	"context"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/airlock-registry/airlock/shared/storage"
)

// alg is the only signing algorithm issued and accepted.
const alg = "ES256"

// Leeway is the clock skew tolerated when checking exp, nbf and iat: a token
// verifies until exp+Leeway (excluded) and from nbf−Leeway on. Issuers and
// verifiers are instances of one deployment with synchronised clocks, so a
// few seconds cover their skew; clients never check times.
const Leeway = 3 * time.Second

// MaxTokenSize is the size of the largest token Verify reads (and Issue
// produces): 8 KiB, well below usual HTTP header limits.
const MaxTokenSize = 8 << 10

// Token lifetimes (Options).
const (
	// DefaultLifetime is the lifetime of access tokens when Options.Lifetime is 0.
	DefaultLifetime = 5 * time.Minute
	// MinLifetime is the shortest lifetime of access and refresh tokens: the
	// token spec's minimum expires_in (60 seconds).
	MinLifetime = 60 * time.Second
	// DefaultRefreshLifetime is the lifetime of refresh tokens when
	// Options.RefreshLifetime is 0.
	DefaultRefreshLifetime = 30 * 24 * time.Hour
	// MaxLifetime is the longest lifetime of access and refresh tokens.
	MaxLifetime = 366 * 24 * time.Hour
)

// Values of the "use" claim, which tells access tokens from refresh tokens.
const (
	useAccess  = "access"
	useRefresh = "refresh"
)

// ErrInvalid is wrapped by every error of Verify and VerifyRefresh: the
// token is refused. The error adds a short fixed reason ("token expired",
// "bad signature", …) and never any part of the token.
var ErrInvalid = errors.New("invalid token")

// Reasons of verification failures: the only texts after "invalid token: ".
const (
	rTooLarge    = "token larger than 8 KiB"
	rMalformed   = "malformed token"
	rNoAudience  = "no audience to check"
	rAlg         = "algorithm not allowed"
	rHeader      = "unexpected header"
	rNoKid       = "no key id"
	rUnknownKid  = "unknown key id"
	rRetired     = "signed by a retired key"
	rSignature   = "bad signature"
	rExpired     = "token expired"
	rNotYet      = "token not valid yet"
	rFuture      = "token issued in the future"
	rAudience    = "wrong audience"
	rIssuer      = "wrong issuer"
	rMissing     = "required claim missing"
	rLifetime    = "lifetime longer than allowed"
	rRefresh     = "refresh token used as an access token"
	rAccess      = "access token used as a refresh token"
	rUse         = "unknown token use"
	rAccessClaim = "bad access claim"
	rOther       = "unverifiable token"
)

// invalid returns the error of a refused token.
func invalid(reason string) error { return fmt.Errorf("%w: %s", ErrInvalid, reason) }

// Access is one resource of a token's access claim with the actions granted
// on it: {"type":"repository","name":"team/app","actions":["pull","push"]},
// or {"type":"registry","name":"catalog","actions":["*"]} for the catalog.
type Access struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// Claims are the claims of an issued or verified token. Times are in UTC,
// to the second (JWT NumericDate).
type Claims struct {
	// Issuer (iss) is Options.Issuer of the Service that issued it.
	Issuer string
	// Subject (sub) is the user the token was issued to ("" for anonymous
	// access tokens).
	Subject string
	// Audience (aud) is the service the token is meant for (the token
	// request's service parameter).
	Audience string
	// ID (jti) is the token's unique random id.
	ID string
	// IssuedAt (iat), NotBefore (nbf; equal to IssuedAt) and ExpiresAt (exp).
	IssuedAt, NotBefore, ExpiresAt time.Time
	// Access lists exactly the actions granted per resource (never nil for
	// an access token; nil for a refresh token).
	Access []Access
	// Refresh tells a refresh token (IssueRefresh) from an access token.
	Refresh bool
}

// Allows tells whether c, an access token's claims, grant action on the
// resource of type typ named name: an Access entry with exactly that type and
// name (bytes compared, no patterns) lists action, or lists "*" (every
// action on that resource, as distribution's token verifier reads it).
// Refresh tokens allow nothing; empty arguments are never allowed.
func (c Claims) Allows(typ, name, action string) bool {
	if c.Refresh || typ == "" || name == "" || action == "" {
		return false
	}
	for _, a := range c.Access {
		if a.Type != typ || a.Name != name {
			continue
		}
		for _, x := range a.Actions {
			if x == action || x == "*" {
				return true
			}
		}
	}
	return false
}

// Options configure a Service.
type Options struct {
	// Issuer is the iss claim of issued tokens, the only one Verify accepts
	// (required).
	Issuer string
	// Lifetime is the lifetime of access tokens (0: DefaultLifetime; at
	// least MinLifetime, at most MaxLifetime; whole seconds). Verify refuses
	// access tokens issued for longer.
	Lifetime time.Duration
	// RefreshLifetime is the lifetime of refresh tokens (0:
	// DefaultRefreshLifetime; at least MinLifetime, at most MaxLifetime;
	// whole seconds). VerifyRefresh refuses refresh tokens issued for longer.
	RefreshLifetime time.Duration
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// PEM, when set, holds operator-provided keys instead of keys kept in
	// the store: PEM blocks of P-256 keys, "EC PRIVATE KEY" (SEC 1),
	// "PRIVATE KEY" (PKCS #8) or "PUBLIC KEY" (PKIX). The first private key
	// signs; every key verifies (keep the previous key as a further block
	// while rotating). The store is then never used, and Rotate fails.
	PEM []byte
}

// Service issues and verifies tokens. It is safe for concurrent use.
// Verify and VerifyRefresh read keys from memory only (see the package
// comment).
type Service struct {
	store storage.ProxyMetadata // nil with operator-provided keys
	iss   string
	// lifetime and refreshLifetime are those of Options; grace is how long
	// a key keeps verifying after its successor became active.
	lifetime, refreshLifetime, grace time.Duration
	now                              func() time.Time

	keys   atomic.Pointer[keySet]
	loaded atomic.Int64 // UnixNano of the last successful read of the keys

	loadMu sync.Mutex // serialises reads and writes of the keys
	tried  time.Time  // the last read attempt (loadMu held)
}

// NewService returns a Service issuing tokens as o.Issuer. Unless o.PEM is
// set, it reads the keys from store (one ListMarkers) and, when there is
// none yet, creates the first one (two more writes; of Services doing so at
// once on one store, exactly one key is created and all use it).
func NewService(ctx context.Context, store storage.ProxyMetadata, o Options) (*Service, error) {
	if o.Issuer == "" {
		return nil, errors.New("token: Options.Issuer is required")
	}
	life, err := lifetime("Lifetime", o.Lifetime, DefaultLifetime)
	if err != nil {
		return nil, err
	}
	rlife, err := lifetime("RefreshLifetime", o.RefreshLifetime, DefaultRefreshLifetime)
	if err != nil {
		return nil, err
	}
	s := &Service{iss: o.Issuer, lifetime: life, refreshLifetime: rlife, now: o.Now}
	if s.now == nil {
		s.now = time.Now
	}
	// A key may have signed a token until its successor became active (a
	// signer reads the keys again before signing once they are a minute
	// old, and activation waits longer than that); every token it signed
	// has expired after the longest lifetime and the leeway. A minute more
	// covers skew between instances' clocks.
	s.grace = max(life, rlife) + Leeway + keyRefresh
	if len(o.PEM) > 0 {
		ks, err := parsePEM(o.PEM)
		if err != nil {
			return nil, err
		}
		s.keys.Store(ks)
		return s, nil
	}
	if store == nil {
		return nil, errors.New("token: a store or Options.PEM is required")
	}
	s.store = store
	if err := s.loadOrCreate(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// lifetime checks and defaults a lifetime option.
func lifetime(name string, d, def time.Duration) (time.Duration, error) {
	if d == 0 {
		return def, nil
	}
	d = d.Truncate(time.Second)
	if d < MinLifetime || d > MaxLifetime {
		return 0, fmt.Errorf("token: Options.%s %v: must be between %v and %v", name, d, MinLifetime, MaxLifetime)
	}
	return d, nil
}

// wireClaims is the JWT claim set as encoded.
type wireClaims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  string           `json:"aud"`
	ExpiresAt *jwt.NumericDate `json:"exp"`
	NotBefore *jwt.NumericDate `json:"nbf"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
	ID        string           `json:"jti"`
	// Access is present (possibly []) in access tokens, absent in refresh tokens.
	Access *[]Access `json:"access,omitempty"`
	// Use is "access" or "refresh".
	Use string `json:"use"`
}

func (c *wireClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt, nil }
func (c *wireClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt, nil }
func (c *wireClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.NotBefore, nil }
func (c *wireClaims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c *wireClaims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c *wireClaims) GetAudience() (jwt.ClaimStrings, error) {
	if c.Audience == "" {
		return nil, nil
	}
	return jwt.ClaimStrings{c.Audience}, nil
}

// claims converts verified wire claims.
func (c *wireClaims) claims() Claims {
	out := Claims{
		Issuer:    c.Issuer,
		Subject:   c.Subject,
		Audience:  c.Audience,
		ID:        c.ID,
		IssuedAt:  c.IssuedAt.UTC(),
		NotBefore: c.NotBefore.UTC(),
		ExpiresAt: c.ExpiresAt.UTC(),
		Refresh:   c.Use == useRefresh,
	}
	if c.Access != nil {
		out.Access = *c.Access
	}
	return out
}

// Issue returns an access token for subject ("" for anonymous) meant for
// audience, granting exactly access (copied; type and name required, as
// are the actions' names), valid for Options.Lifetime from now, signed with
// the current key, and its claims. It reads the keys again first when they
// are more than a minute old (so that it signs with a rotated-in key once
// that is active); a failing read keeps the cached keys.
func (s *Service) Issue(ctx context.Context, subject, audience string, access []Access) (tok string, c Claims, err error) {
	acc := make([]Access, 0, len(access))
	for _, a := range access {
		if a.Type == "" || a.Name == "" {
			return "", Claims{}, errors.New("token: issue: an access entry needs a type and a name")
		}
		actions := make([]string, 0, len(a.Actions))
		for _, x := range a.Actions {
			if x == "" {
				return "", Claims{}, errors.New("token: issue: empty action")
			}
			actions = append(actions, x)
		}
		acc = append(acc, Access{Type: a.Type, Name: a.Name, Actions: actions})
	}
	return s.issue(ctx, subject, audience, &acc, useAccess, s.lifetime)
}

// IssueRefresh returns a refresh token for subject (required) meant for
// audience, valid for Options.RefreshLifetime, and its claims. Only
// VerifyRefresh accepts it; it grants no access.
func (s *Service) IssueRefresh(ctx context.Context, subject, audience string) (string, Claims, error) {
	if subject == "" {
		return "", Claims{}, errors.New("token: issue refresh token: a subject is required")
	}
	return s.issue(ctx, subject, audience, nil, useRefresh, s.refreshLifetime)
}

// halfOrder is half the order of P-256: issued signatures have s at most
// this (the low-s form), and Verify refuses others, so that no token has a
// second valid form (ECDSA's (r, n−s)).
var halfOrder = new(big.Int).Rsh(elliptic.P256().Params().N, 1)

func (s *Service) issue(ctx context.Context, subject, audience string, access *[]Access, use string, life time.Duration) (string, Claims, error) {
	if audience == "" {
		return "", Claims{}, errors.New("token: issue: an audience is required")
	}
	k, err := s.signer(ctx)
	if err != nil {
		return "", Claims{}, err
	}
	now := s.now().UTC().Truncate(time.Second)
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return "", Claims{}, fmt.Errorf("token: issue: %w", err)
	}
	wc := &wireClaims{
		Issuer:    s.iss,
		Subject:   subject,
		Audience:  audience,
		ExpiresAt: jwt.NewNumericDate(now.Add(life)),
		NotBefore: jwt.NewNumericDate(now),
		IssuedAt:  jwt.NewNumericDate(now),
		ID:        base64.RawURLEncoding.EncodeToString(id),
		Access:    access,
		Use:       use,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, wc)
	t.Header["kid"] = k.kid
	signing, err := t.SigningString()
	if err != nil {
		return "", Claims{}, fmt.Errorf("token: issue: %w", err)
	}
	sig, err := jwt.SigningMethodES256.Sign(signing, k.priv)
	if err != nil || len(sig) != 64 {
		return "", Claims{}, fmt.Errorf("token: issue: sign: %v", err)
	}
	if sv := new(big.Int).SetBytes(sig[32:]); sv.Cmp(halfOrder) > 0 {
		sv.Sub(elliptic.P256().Params().N, sv)
		sv.FillBytes(sig[32:])
	}
	tok := signing + "." + base64.RawURLEncoding.EncodeToString(sig)
	if len(tok) > MaxTokenSize {
		return "", Claims{}, fmt.Errorf("token: issue: the token would exceed %d bytes (too many access entries)", MaxTokenSize)
	}
	return tok, wc.claims(), nil
}

// signer returns the key to sign with, reading the keys again when they are
// more than keyRefresh old, and creating one when there is none (every key
// was deleted from the store).
func (s *Service) signer(ctx context.Context) (*key, error) {
	if ks := s.keys.Load(); ks.fixed != nil {
		return ks.fixed, nil
	}
	if s.now().Sub(time.Unix(0, s.loaded.Load())) >= keyRefresh {
		_, _ = s.reload(ctx, false) // on errors, sign with the cached keys
	}
	if k := s.keys.Load().signer(s.now()); k != nil {
		return k, nil
	}
	if err := s.loadOrCreate(ctx); err != nil {
		return nil, err
	}
	if k := s.keys.Load().signer(s.now()); k != nil {
		return k, nil
	}
	return nil, errors.New("token: no signing key")
}

// Verify checks an access token meant for audience and returns its claims.
// It refuses (with an error wrapping ErrInvalid) anything but an ES256 token
// issued by a Service of this Issuer with a key it knows, unexpired, for
// audience, with an access claim: every other alg (none, HS256 keyed with
// the public key, RS256, …), refresh tokens, bad signatures, tokens over
// MaxTokenSize. It reads no store, except when the kid is unknown and the
// token is otherwise plausible: then it reads the keys again (a key added
// by another Service), at most once a minute.
func (s *Service) Verify(ctx context.Context, tok, audience string) (Claims, error) {
	return s.verify(ctx, tok, audience, useAccess)
}

// VerifyRefresh is Verify for refresh tokens (IssueRefresh); it refuses
// access tokens.
func (s *Service) VerifyRefresh(ctx context.Context, tok, audience string) (Claims, error) {
	return s.verify(ctx, tok, audience, useRefresh)
}

// sigLen is the length of an encoded ES256 signature (64 bytes, base64url).
const sigLen = 86

// wellFormed tells whether tok is three non-empty base64url segments, the
// last of an ES256 signature's length. Base64 decoders ignore newlines
// and the jwt library accepts other lengths, so this keeps any second
// encoding of an issued token from verifying.
func wellFormed(tok string) bool {
	dots, last := 0, -1
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		switch {
		case c == '.':
			if i == last+1 {
				return false // empty segment
			}
			dots, last = dots+1, i
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return dots == 2 && len(tok)-last-1 == sigLen
}

func (s *Service) verify(ctx context.Context, tok, aud, use string) (Claims, error) {
	if len(tok) > MaxTokenSize {
		return Claims{}, invalid(rTooLarge)
	}
	if !wellFormed(tok) {
		return Claims{}, invalid(rMalformed)
	}
	if aud == "" {
		return Claims{}, invalid(rNoAudience)
	}
	now := s.now()
	var wc wireClaims
	reason := ""
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{alg}),
		jwt.WithStrictDecoding(),
		jwt.WithIssuer(s.iss),
		jwt.WithAudience(aud),
		jwt.WithExpirationRequired(),
		jwt.WithNotBeforeRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	t, err := p.ParseWithClaims(tok, &wc, func(t *jwt.Token) (any, error) {
		k, r := s.keyFor(ctx, t, &wc, aud, use, now)
		if r != "" {
			reason = r
			return nil, errors.New(r)
		}
		return k.pub, nil
	})
	if reason != "" {
		return Claims{}, invalid(reason)
	}
	if err != nil {
		return Claims{}, invalid(jwtReason(err, t))
	}
	// The library checked signature and claims; check again what this
	// package relies on, and what it does not check.
	if t.Method == nil || t.Method.Alg() != alg {
		return Claims{}, invalid(rAlg)
	}
	if r := s.checkClaims(&wc, aud, use, now); r != "" {
		return Claims{}, invalid(r)
	}
	sig, err := base64.RawURLEncoding.Strict().DecodeString(tok[strings.LastIndexByte(tok, '.')+1:])
	if err != nil || len(sig) != 64 || new(big.Int).SetBytes(sig[32:]).Cmp(halfOrder) > 0 {
		return Claims{}, invalid(rSignature)
	}
	return wc.claims(), nil
}

// keyFor returns the verification key of t (header checked), or the
// reason to refuse it.
func (s *Service) keyFor(ctx context.Context, t *jwt.Token, wc *wireClaims, aud, use string, now time.Time) (*key, string) {
	if a, _ := t.Header["alg"].(string); a != alg {
		return nil, rAlg
	}
	if typ, _ := t.Header["typ"].(string); typ != "JWT" {
		return nil, rHeader
	}
	if _, ok := t.Header["crit"]; ok {
		return nil, rHeader
	}
	kid, _ := t.Header["kid"].(string)
	if kid == "" {
		return nil, rNoKid
	}
	ks := s.keys.Load()
	k, retired := ks.verifier(kid, now)
	if k == nil && !retired && ks.fixed == nil && len(kid) == kidLen && s.checkClaims(wc, aud, use, now) == "" {
		// Perhaps a key another Service added: read the keys again (at
		// most once a minute), for a token that would otherwise pass.
		if read, _ := s.reload(ctx, false); read {
			k, retired = s.keys.Load().verifier(kid, now)
		}
	}
	switch {
	case retired:
		return nil, rRetired
	case k == nil:
		return nil, rUnknownKid
	}
	return k, ""
}

// checkClaims checks decoded claims (not the signature), or returns the
// reason to refuse them.
func (s *Service) checkClaims(wc *wireClaims, aud, use string, now time.Time) string {
	life := s.lifetime
	switch {
	case wc.Use == use:
		if use == useRefresh {
			life = s.refreshLifetime
		}
	case wc.Use == useRefresh:
		return rRefresh
	case wc.Use == useAccess:
		return rAccess
	default:
		return rUse
	}
	if wc.Issuer != s.iss {
		return rIssuer
	}
	if wc.Audience != aud {
		return rAudience
	}
	if wc.ID == "" || wc.IssuedAt == nil || wc.NotBefore == nil || wc.ExpiresAt == nil {
		return rMissing
	}
	exp, nbf, iat := wc.ExpiresAt.Time, wc.NotBefore.Time, wc.IssuedAt.Time
	if !now.Before(exp.Add(Leeway)) {
		return rExpired
	}
	if now.Add(Leeway).Before(nbf) {
		return rNotYet
	}
	if now.Add(Leeway).Before(iat) {
		return rFuture
	}
	if exp.Sub(iat) > life || !exp.After(nbf) {
		return rLifetime
	}
	if use == useRefresh {
		if wc.Access != nil {
			return rAccessClaim
		}
		if wc.Subject == "" {
			return rMissing
		}
		return ""
	}
	if wc.Access == nil {
		return rAccessClaim
	}
	for _, a := range *wc.Access {
		if a.Type == "" || a.Name == "" {
			return rAccessClaim
		}
	}
	return ""
}

// jwtReason maps the jwt library's errors to a fixed reason (its messages
// may quote parts of the token).
func jwtReason(err error, t *jwt.Token) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return rMalformed
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return rAlg // alg missing or unknown (keyfunc refusals have their reason)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if t != nil && (t.Method == nil || t.Method.Alg() != alg) {
			return rAlg
		}
		return rSignature
	case errors.Is(err, jwt.ErrTokenExpired):
		return rExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return rNotYet
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return rFuture
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return rAudience
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return rIssuer
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return rMissing
	}
	return rOther
}
