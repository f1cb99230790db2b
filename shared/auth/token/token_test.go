package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/storage/memstore"
)

const (
	testIss = "airlock"
	testAud = "registry.example.com"
)

// clock is a settable clock shared by the store and the Services.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 600e6, time.UTC)} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

// counting wraps a store and counts its calls.
type counting struct {
	storage.ProxyMetadata
	n     atomic.Int64
	lists atomic.Int64
}

func (c *counting) GetTagCheck(ctx context.Context, img storage.Image, tag string) (storage.TagCheck, error) {
	c.n.Add(1)
	return c.ProxyMetadata.GetTagCheck(ctx, img, tag)
}

func (c *counting) PutTagCheck(ctx context.Context, img storage.Image, tag string, tc storage.TagCheck) error {
	c.n.Add(1)
	return c.ProxyMetadata.PutTagCheck(ctx, img, tag, tc)
}

func (c *counting) PutMarker(ctx context.Context, m storage.Marker) error {
	c.n.Add(1)
	return c.ProxyMetadata.PutMarker(ctx, m)
}

func (c *counting) GetMarker(ctx context.Context, group, key string) (storage.Marker, error) {
	c.n.Add(1)
	return c.ProxyMetadata.GetMarker(ctx, group, key)
}

func (c *counting) DeleteMarker(ctx context.Context, group, key string) error {
	c.n.Add(1)
	return c.ProxyMetadata.DeleteMarker(ctx, group, key)
}

func (c *counting) ListMarkers(ctx context.Context, group string, n int) ([]storage.Marker, error) {
	c.n.Add(1)
	c.lists.Add(1)
	return c.ProxyMetadata.ListMarkers(ctx, group, n)
}

func (c *counting) AcquireMarker(ctx context.Context, m storage.Marker) error {
	c.n.Add(1)
	return c.ProxyMetadata.AcquireMarker(ctx, m)
}

func (c *counting) ReleaseMarker(ctx context.Context, group, key, value string) error {
	c.n.Add(1)
	return c.ProxyMetadata.ReleaseMarker(ctx, group, key, value)
}

// gate makes the first n ListMarkers calls wait for each other, so that n
// Services racing read the same (empty or old) keys before any writes.
type gate struct {
	storage.ProxyMetadata
	mu      sync.Mutex
	waiting int
	n       int
	open    chan struct{}
}

func newGate(s storage.ProxyMetadata, n int) *gate {
	return &gate{ProxyMetadata: s, n: n, open: make(chan struct{})}
}

func (g *gate) ListMarkers(ctx context.Context, group string, n int) ([]storage.Marker, error) {
	ms, err := g.ProxyMetadata.ListMarkers(ctx, group, n)
	g.mu.Lock()
	first := g.waiting < g.n
	if first {
		g.waiting++
		if g.waiting == g.n {
			close(g.open)
		}
	}
	g.mu.Unlock()
	if first {
		select {
		case <-g.open:
		case <-time.After(10 * time.Second):
			return nil, errors.New("gate: timeout")
		}
	}
	return ms, err
}

func newStore(t testing.TB, c *clock) *memstore.Store {
	s := memstore.New(memstore.WithClock(c.Now))
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newService(t testing.TB, store storage.ProxyMetadata, c *clock, o Options) *Service {
	t.Helper()
	if o.Issuer == "" {
		o.Issuer = testIss
	}
	o.Now = c.Now
	s, err := NewService(context.Background(), store, o)
	if err != nil {
		t.Fatalf("NewService: %v", err)
	}
	return s
}

func issue(t testing.TB, s *Service, access ...Access) (string, Claims) {
	t.Helper()
	tok, c, err := s.Issue(context.Background(), "alice", testAud, access)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	return tok, c
}

func pullPush(name string) Access {
	return Access{Type: "repository", Name: name, Actions: []string{"pull", "push"}}
}

// signES256 signs claims with priv under header (alg ES256 set), in the
// low-s form like Issue.
func signES256(t testing.TB, priv *ecdsa.PrivateKey, header map[string]any, claims any) string {
	t.Helper()
	h := map[string]any{"alg": "ES256", "typ": "JWT"}
	for k, v := range header {
		if v == nil {
			delete(h, k)
		} else {
			h[k] = v
		}
	}
	signing := segment(t, h) + "." + segment(t, claims)
	sig, err := jwt.SigningMethodES256.Sign(signing, priv)
	if err != nil {
		t.Fatal(err)
	}
	if sv := new(big.Int).SetBytes(sig[32:]); sv.Cmp(halfOrder) > 0 {
		sv.Sub(elliptic.P256().Params().N, sv)
		sv.FillBytes(sig[32:])
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// signWith signs claims with another method and key under header.
func signWith(t testing.TB, m jwt.SigningMethod, k any, header map[string]any, claims any) string {
	t.Helper()
	h := map[string]any{"alg": m.Alg(), "typ": "JWT"}
	for name, v := range header {
		h[name] = v
	}
	signing := segment(t, h) + "." + segment(t, claims)
	sig, err := m.Sign(signing, k)
	if err != nil {
		t.Fatalf("sign %s: %v", m.Alg(), err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func segment(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// claimsAt returns the claims of a valid access token issued at now.
func claimsAt(now time.Time) map[string]any {
	n := now.Unix()
	return map[string]any{
		"iss": testIss, "sub": "alice", "aud": testAud,
		"iat": n, "nbf": n, "exp": n + 300, "jti": "j1",
		"access": []Access{{Type: "repository", Name: "team/app", Actions: []string{"pull"}}},
		"use":    "access",
	}
}

func with(m map[string]any, kv ...any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

// signing returns the Service's current signing key.
func signing(t testing.TB, s *Service) *key {
	t.Helper()
	k := s.keys.Load().signer(s.now())
	if k == nil {
		t.Fatal("no signing key")
	}
	return k
}

func decodeSegment(t testing.TB, seg string, v any) {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func kidOfToken(t testing.TB, tok string) string {
	t.Helper()
	var h map[string]any
	decodeSegment(t, strings.Split(tok, ".")[0], &h)
	kid, _ := h["kid"].(string)
	return kid
}

func markers(t testing.TB, st storage.ProxyMetadata) []storage.Marker {
	t.Helper()
	ms, err := st.ListMarkers(context.Background(), keyGroup, 0)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func markerKeys(ms []storage.Marker) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Key)
	}
	return out
}

// reasons are every reason an error of Verify may give.
var reasons = []string{rTooLarge, rMalformed, rNoAudience, rAlg, rHeader, rNoKid, rUnknownKid, rRetired,
	rSignature, rExpired, rNotYet, rFuture, rAudience, rIssuer, rMissing, rLifetime, rRefresh, rAccess,
	rUse, rAccessClaim, rOther}

// checkRefused checks err refuses tok with a fixed reason (want, unless "").
func checkRefused(t testing.TB, err error, tok, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted, want refused (%s)", want)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("error %v does not wrap ErrInvalid", err)
	}
	msg := err.Error()
	reason, ok := strings.CutPrefix(msg, ErrInvalid.Error()+": ")
	known := false
	for _, r := range reasons {
		known = known || r == reason
	}
	if !ok || !known {
		t.Fatalf("error %q: not a fixed reason", msg)
	}
	if want != "" && reason != want {
		t.Fatalf("refused for %q, want %q", reason, want)
	}
	if len(tok) >= 8 && strings.Contains(msg, tok) {
		t.Fatalf("error %q includes the token", msg)
	}
}

func TestRoundTrip(t *testing.T) {
	c := newClock()
	st := newStore(t, c)
	s := newService(t, st, c, Options{})
	ctx := context.Background()
	access := []Access{pullPush("team/app"), {Type: "registry", Name: "catalog", Actions: []string{"*"}}}
	tok, ic, err := s.Issue(ctx, "alice", testAud, access)
	if err != nil {
		t.Fatal(err)
	}
	access[0].Actions[0] = "delete" // Issue copied
	now := c.Now().UTC().Truncate(time.Second)
	want := Claims{
		Issuer: testIss, Subject: "alice", Audience: testAud, ID: ic.ID,
		IssuedAt: now, NotBefore: now, ExpiresAt: now.Add(DefaultLifetime),
		Access: []Access{pullPush("team/app"), {Type: "registry", Name: "catalog", Actions: []string{"*"}}},
	}
	if d := cmp.Diff(want, ic); d != "" {
		t.Fatalf("Issue claims (-want +got):\n%s", d)
	}
	if len(ic.ID) != 22 {
		t.Errorf("jti %q: want 16 random bytes", ic.ID)
	}
	vc, err := s.Verify(ctx, tok, testAud)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if d := cmp.Diff(ic, vc); d != "" {
		t.Fatalf("Verify claims (-issued +verified):\n%s", d)
	}
	// The encoding: the spec's header and claims.
	parts := strings.Split(tok, ".")
	var h map[string]any
	decodeSegment(t, parts[0], &h)
	if d := cmp.Diff(map[string]any{"alg": "ES256", "typ": "JWT", "kid": signing(t, s).kid}, h); d != "" {
		t.Errorf("header (-want +got):\n%s", d)
	}
	raw := map[string]any{}
	decodeSegment(t, parts[1], &raw)
	for _, name := range []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "access", "use"} {
		if _, ok := raw[name]; !ok {
			t.Errorf("claim %s missing: %v", name, raw)
		}
	}
	if raw["aud"] != testAud || raw["use"] != "access" || raw["exp"] != float64(now.Add(DefaultLifetime).Unix()) {
		t.Errorf("claims %v", raw)
	}
	if len(tok) > MaxTokenSize || len(parts[2]) != sigLen {
		t.Errorf("token of %d bytes, signature of %d", len(tok), len(parts[2]))
	}

	// No access (docker login): "access":[].
	tok, ic, err = s.Issue(ctx, "", testAud, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw = map[string]any{}
	decodeSegment(t, strings.Split(tok, ".")[1], &raw)
	if a, ok := raw["access"].([]any); !ok || len(a) != 0 {
		t.Errorf("access of a token without access: %v", raw["access"])
	}
	vc, err = s.Verify(ctx, tok, testAud)
	if err != nil || vc.Access == nil || len(vc.Access) != 0 || vc.Subject != "" {
		t.Fatalf("Verify anonymous: %+v, %v", vc, err)
	}
	if d := cmp.Diff(ic, vc); d != "" {
		t.Fatalf("anonymous claims (-issued +verified):\n%s", d)
	}

	// Refresh tokens.
	rt, rc, err := s.IssueRefresh(ctx, "alice", testAud)
	if err != nil {
		t.Fatal(err)
	}
	if !rc.Refresh || rc.Access != nil || !rc.ExpiresAt.Equal(now.Add(DefaultRefreshLifetime)) {
		t.Errorf("refresh claims %+v", rc)
	}
	vr, err := s.VerifyRefresh(ctx, rt, testAud)
	if err != nil {
		t.Fatalf("VerifyRefresh: %v", err)
	}
	if d := cmp.Diff(rc, vr); d != "" {
		t.Fatalf("refresh claims (-issued +verified):\n%s", d)
	}
	raw = map[string]any{}
	decodeSegment(t, strings.Split(rt, ".")[1], &raw)
	if _, ok := raw["access"]; ok || raw["use"] != "refresh" {
		t.Errorf("refresh claims %v", raw)
	}
	if vr.Allows("repository", "team/app", "pull") {
		t.Error("a refresh token allows access")
	}
}

func TestIssueErrors(t *testing.T) {
	c := newClock()
	s := newService(t, newStore(t, c), c, Options{})
	ctx := context.Background()
	if _, _, err := s.Issue(ctx, "alice", "", nil); err == nil {
		t.Error("Issue without audience")
	}
	if _, _, err := s.Issue(ctx, "alice", testAud, []Access{{Type: "repository", Actions: []string{"pull"}}}); err == nil {
		t.Error("Issue of an access entry without name")
	}
	if _, _, err := s.Issue(ctx, "alice", testAud, []Access{{Type: "repository", Name: "a", Actions: []string{""}}}); err == nil {
		t.Error("Issue of an empty action")
	}
	if _, _, err := s.IssueRefresh(ctx, "", testAud); err == nil {
		t.Error("IssueRefresh without subject")
	}
	var big []Access
	for i := range 200 {
		big = append(big, pullPush(fmt.Sprintf("team/app-%03d", i)))
	}
	if _, _, err := s.Issue(ctx, "alice", testAud, big); err == nil || errors.Is(err, ErrInvalid) {
		t.Errorf("Issue of a token over 8 KiB: %v", err)
	}
}

func TestOptions(t *testing.T) {
	c := newClock()
	st := newStore(t, c)
	ctx := context.Background()
	for _, o := range []Options{
		{},
		{Issuer: testIss, Lifetime: 59 * time.Second},
		{Issuer: testIss, Lifetime: -time.Minute},
		{Issuer: testIss, RefreshLifetime: 30 * time.Second},
		{Issuer: testIss, Lifetime: 400 * 24 * time.Hour},
		{Issuer: testIss, PEM: []byte("-----BEGIN NOTHING-----\nAAAA\n-----END NOTHING-----\n")},
		{Issuer: testIss, PEM: []byte("garbage")},
	} {
		if _, err := NewService(ctx, st, o); err == nil {
			t.Errorf("NewService(%+v) succeeded", o)
		}
	}
	if _, err := NewService(ctx, nil, Options{Issuer: testIss}); err == nil {
		t.Error("NewService without store nor PEM succeeded")
	}
	if len(markers(t, st)) != 0 {
		t.Error("failed NewService calls wrote keys")
	}
	s := newService(t, st, c, Options{Lifetime: 90*time.Second + 500*time.Millisecond})
	_, ic := issue(t, s)
	if got := ic.ExpiresAt.Sub(ic.IssuedAt); got != 90*time.Second {
		t.Errorf("lifetime %v, want 90s", got)
	}
}

func TestAttacks(t *testing.T) {
	c := newClock()
	st := newStore(t, c)
	s := newService(t, st, c, Options{})
	ctx := context.Background()
	k := signing(t, s)
	now := c.Now()
	good, _ := issue(t, s, Access{Type: "repository", Name: "team/app", Actions: []string{"pull"}})
	refresh, _, err := s.IssueRefresh(ctx, "alice", testAud)
	if err != nil {
		t.Fatal(err)
	}
	// A token crafted with the Service's own key verifies: the refusals
	// below are for what was changed, not for how it was built.
	if _, err := s.Verify(ctx, signES256(t, k.priv, map[string]any{"kid": k.kid}, claimsAt(now)), testAud); err != nil {
		t.Fatalf("crafted baseline refused: %v", err)
	}
	other := newService(t, newStore(t, c), c, Options{}) // same issuer, other keys
	otherTok, _ := issue(t, other)
	otherIss := newService(t, st, c, Options{Issuer: "someone-else"}) // same keys, other issuer
	otherIssTok, _ := issue(t, otherIss)

	foreign, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	foreignKid, _ := kidOf(&foreign.PublicKey)
	pubDER, err := x509.MarshalPKIXPublicKey(k.pub)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	pubRaw, _ := k.pub.Bytes()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kidH := map[string]any{"kid": k.kid}
	cl := claimsAt(now)
	goodParts := strings.Split(good, ".")

	// The payload of good with access widened, under good's signature.
	var payload map[string]any
	decodeSegment(t, goodParts[1], &payload)
	payload["access"] = []Access{pullPush("team/app")}
	tampered := goodParts[0] + "." + segment(t, payload) + "." + goodParts[2]
	// good's signature with s replaced by n−s (valid ECDSA, not low-s).
	sig, _ := base64.RawURLEncoding.DecodeString(goodParts[2])
	sv := new(big.Int).SetBytes(sig[32:])
	sv.Sub(elliptic.P256().Params().N, sv).FillBytes(sig[32:])
	highS := goodParts[0] + "." + goodParts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
	if !ecdsa.Verify(k.pub, sha256Sum(goodParts[0]+"."+goodParts[1]), new(big.Int).SetBytes(sig[:32]), sv) {
		t.Fatal("the high-s signature does not verify as ECDSA: the test is wrong")
	}
	noneTok := segment(t, map[string]any{"alg": "none", "typ": "JWT", "kid": k.kid}) + "." + segment(t, cl) + "."
	var hugeAccess []Access
	for i := range 200 {
		hugeAccess = append(hugeAccess, pullPush(fmt.Sprintf("team/app-%03d", i)))
	}

	tests := []struct {
		name    string
		tok     string
		refresh bool // VerifyRefresh instead of Verify
		want    string
	}{
		{"alg none, empty signature", noneTok, false, rMalformed},
		{"alg none, signature-sized", noneTok + goodParts[2], false, rAlg},
		{"alg none, refresh", noneTok + goodParts[2], true, rAlg},
		{"HS256 keyed with the public key PEM", signWith(t, jwt.SigningMethodHS256, pubPEM, kidH, cl), false, ""},
		{"HS256 keyed with the raw public key", signWith(t, jwt.SigningMethodHS256, pubRaw, kidH, cl), false, ""},
		{"HS256 keyed with the public key DER", signWith(t, jwt.SigningMethodHS256, pubDER, kidH, cl), false, ""},
		{"HS512 keyed with the public key PEM (signature-sized)", signWith(t, jwt.SigningMethodHS512, pubPEM, kidH, cl), false, rAlg},
		{"HS512 keyed with the raw public key", signWith(t, jwt.SigningMethodHS512, pubRaw, kidH, cl), false, rAlg},
		{"RS256", signWith(t, jwt.SigningMethodRS256, rsaKey, kidH, cl), false, ""},
		{"EdDSA (signature-sized)", signWith(t, jwt.SigningMethodEdDSA, edKey, kidH, cl), false, rAlg},
		{"ES384", signWith(t, jwt.SigningMethodES384, p384, kidH, cl), false, ""},
		{"ES256 with the header's alg lower-case", signES256(t, k.priv, map[string]any{"kid": k.kid, "alg": "es256"}, cl), false, rAlg},
		{"another ES256 key with the same kid", signES256(t, foreign, kidH, cl), false, rSignature},
		{"another Service's key (same issuer)", otherTok, false, rUnknownKid},
		{"tampered payload (access widened)", tampered, false, rSignature},
		{"high-s form of a valid signature", highS, false, rSignature},
		{"wrong aud", signES256(t, k.priv, kidH, with(cl, "aud", "other.example.com")), false, rAudience},
		{"aud as an array", signES256(t, k.priv, kidH, with(cl, "aud", []string{testAud})), false, rMalformed},
		{"wrong iss (same keys)", otherIssTok, false, rIssuer},
		{"wrong iss (crafted)", signES256(t, k.priv, kidH, with(cl, "iss", "evil")), false, rIssuer},
		{"refresh token as access token", refresh, false, rRefresh},
		{"access token as refresh token", good, true, rAccess},
		{"use missing", signES256(t, k.priv, kidH, with(cl, "use", nil)), false, rUse},
		{"refresh token with an access claim", signES256(t, k.priv, kidH, with(cl, "use", "refresh", "exp", now.Unix()+60)), true, rAccessClaim},
		{"access token without access claim", signES256(t, k.priv, kidH, with(cl, "access", nil)), false, rAccessClaim},
		{"access entry without name", signES256(t, k.priv, kidH, with(cl, "access", []Access{{Type: "repository", Actions: []string{"push"}}})), false, rAccessClaim},
		{"missing kid", signES256(t, k.priv, nil, cl), false, rNoKid},
		{"kid not a string", signES256(t, k.priv, map[string]any{"kid": 7}, cl), false, rNoKid},
		{"unknown kid", signES256(t, foreign, map[string]any{"kid": foreignKid}, cl), false, rUnknownKid},
		{"typ missing", signES256(t, k.priv, map[string]any{"kid": k.kid, "typ": nil}, cl), false, rHeader},
		{"typ other", signES256(t, k.priv, map[string]any{"kid": k.kid, "typ": "at+jwt"}, cl), false, rHeader},
		{"crit header", signES256(t, k.priv, map[string]any{"kid": k.kid, "crit": []string{"exp"}}, cl), false, rHeader},
		{"nbf in the future", signES256(t, k.priv, kidH, with(cl, "nbf", now.Unix()+10)), false, rNotYet},
		{"iat in the future", signES256(t, k.priv, kidH, with(cl, "iat", now.Unix()+10, "nbf", now.Unix()-1)), false, rFuture},
		{"already expired", signES256(t, k.priv, kidH, with(cl, "iat", now.Unix()-400, "nbf", now.Unix()-400, "exp", now.Unix()-100)), false, rExpired},
		{"lifetime over Options.Lifetime", signES256(t, k.priv, kidH, with(cl, "exp", now.Unix()+3600)), false, rLifetime},
		{"exp before nbf", signES256(t, k.priv, kidH, with(cl, "iat", now.Unix()-10, "exp", now.Unix()+60, "nbf", now.Unix()+60)), false, ""},
		{"exp missing", signES256(t, k.priv, kidH, with(cl, "exp", nil)), false, rMissing},
		{"nbf missing", signES256(t, k.priv, kidH, with(cl, "nbf", nil)), false, rMissing},
		{"iat missing", signES256(t, k.priv, kidH, with(cl, "iat", nil)), false, rMissing},
		{"jti missing", signES256(t, k.priv, kidH, with(cl, "jti", nil)), false, rMissing},
		{"exp not a number", signES256(t, k.priv, kidH, with(cl, "exp", "soon")), false, rMalformed},
		{"token over 8 KiB (validly signed)", signES256(t, k.priv, kidH, with(cl, "access", hugeAccess)), false, rTooLarge},
		{"empty", "", false, rMalformed},
		{"garbage", "garbage", false, rMalformed},
		{"two dots only", "..", false, rMalformed},
		{"three dots", good + ".", false, rMalformed},
		{"a.b.c", "a.b.c", false, rMalformed},
		{"bearer prefix", "Bearer " + good, false, rMalformed},
		{"trailing newline", good + "\n", false, rMalformed},
		{"newline inside", goodParts[0] + "\n." + goodParts[1] + "." + goodParts[2], false, rMalformed},
		{"padding", goodParts[0] + "." + goodParts[1] + "=." + goodParts[2], false, rMalformed},
		{"standard base64 character", good[:10] + "+" + good[11:], false, rMalformed},
		{"signature's unused trailing bits set", good[:len(good)-1] + string(flipLow(good[len(good)-1])), false, rMalformed},
		{"header not JSON", base64.RawURLEncoding.EncodeToString([]byte("{")) + "." + goodParts[1] + "." + goodParts[2], false, rMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			verify := s.Verify
			if tc.refresh {
				verify = s.VerifyRefresh
			}
			c, err := verify(ctx, tc.tok, testAud)
			if err == nil {
				t.Fatalf("accepted: %+v", c)
			}
			checkRefused(t, err, tc.tok, tc.want)
		})
	}
	if _, err := s.Verify(ctx, good, ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("Verify with no audience: %v", err)
	}
}

// flipLow changes a base64url character's value by one, keeping its high
// bits (the last character of a signature also carries 4 unused bits).
func flipLow(c byte) byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, c)
	return alphabet[i^1]
}

func sha256Sum(s string) []byte {
	h := jwt.SigningMethodES256.Hash.New()
	h.Write([]byte(s))
	return h.Sum(nil)
}

func TestTimes(t *testing.T) {
	c := newClock()
	s := newService(t, newStore(t, c), c, Options{Lifetime: time.Minute})
	ctx := context.Background()
	tok, ic := issue(t, s)
	k := signing(t, s)
	// Valid until exp+Leeway, excluded.
	c.Add(ic.ExpiresAt.Sub(c.Now()) + Leeway - time.Millisecond)
	if _, err := s.Verify(ctx, tok, testAud); err != nil {
		t.Fatalf("refused within the leeway after exp: %v", err)
	}
	c.Add(time.Millisecond)
	_, err := s.Verify(ctx, tok, testAud)
	checkRefused(t, err, tok, rExpired)
	// Valid from nbf−Leeway on.
	now := c.Now()
	n := now.Unix()
	early := signES256(t, k.priv, map[string]any{"kid": k.kid}, with(claimsAt(now), "iat", n+2, "nbf", n+2, "exp", n+62))
	if _, err := s.Verify(ctx, early, testAud); err != nil {
		t.Fatalf("refused within the leeway before nbf: %v", err)
	}
	late := signES256(t, k.priv, map[string]any{"kid": k.kid}, with(claimsAt(now), "iat", n+4, "nbf", n+4, "exp", n+64))
	_, err = s.Verify(ctx, late, testAud)
	checkRefused(t, err, late, rNotYet)
	// Refresh tokens live RefreshLifetime.
	rt, rc, err := s.IssueRefresh(ctx, "alice", testAud)
	if err != nil {
		t.Fatal(err)
	}
	c.Add(rc.ExpiresAt.Sub(c.Now()) - time.Second)
	if _, err := s.VerifyRefresh(ctx, rt, testAud); err != nil {
		t.Fatalf("refresh token refused before exp: %v", err)
	}
	c.Add(Leeway + time.Second)
	_, err = s.VerifyRefresh(ctx, rt, testAud)
	checkRefused(t, err, rt, rExpired)
}

func TestAllows(t *testing.T) {
	c := Claims{Access: []Access{
		{Type: "repository", Name: "team/a", Actions: []string{"pull"}},
		{Type: "repository", Name: "team/b", Actions: []string{"pull", "push"}},
		{Type: "registry", Name: "catalog", Actions: []string{"*"}},
		{Type: "repository", Name: "team/c", Actions: []string{}},
	}}
	for _, tc := range []struct {
		typ, name, action string
		want              bool
	}{
		{"repository", "team/a", "pull", true},
		{"repository", "team/a", "push", false}, // pull-only token for push
		{"repository", "team/b", "push", true},
		{"repository", "team/b", "delete", false},
		{"repository", "team/x", "pull", false},  // A's token on another repository
		{"repository", "team/A", "pull", false},  // exact bytes
		{"repository", "team/a/", "pull", false}, // no prefixes
		{"repository", "team", "pull", false},
		{"repository", "team/*", "pull", false},
		{"repository", "*", "pull", false},
		{"registry", "team/a", "pull", false}, // type matters
		{"registry", "catalog", "*", true},
		{"registry", "catalog", "pull", true}, // "*" grants every action on its resource
		{"repository", "catalog", "*", false},
		{"repository", "team/a", "*", false}, // asking "*" needs "*" granted
		{"repository", "team/c", "pull", false},
		{"repository", "team/a", "", false},
		{"", "", "", false},
	} {
		if got := c.Allows(tc.typ, tc.name, tc.action); got != tc.want {
			t.Errorf("Allows(%q, %q, %q) = %v, want %v", tc.typ, tc.name, tc.action, got, tc.want)
		}
	}
	c.Refresh = true
	if c.Allows("repository", "team/a", "pull") {
		t.Error("refresh claims allow")
	}
	// Through a real token: A's token on B.
	clk := newClock()
	s := newService(t, newStore(t, clk), clk, Options{})
	tok, _ := issue(t, s, Access{Type: "repository", Name: "team/a", Actions: []string{"pull"}})
	vc, err := s.Verify(context.Background(), tok, testAud)
	if err != nil {
		t.Fatal(err)
	}
	if !vc.Allows("repository", "team/a", "pull") || vc.Allows("repository", "team/b", "pull") || vc.Allows("repository", "team/a", "push") {
		t.Errorf("verified claims allow %+v", vc.Access)
	}
}

func TestRaceNewService(t *testing.T) {
	const n = 8
	c := newClock()
	st := newStore(t, c)
	cnt := &counting{ProxyMetadata: st}
	g := newGate(cnt, n)
	svcs := make([]*Service, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			svcs[i], errs[i] = NewService(context.Background(), g, Options{Issuer: testIss, Now: c.Now})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("NewService %d: %v", i, err)
		}
	}
	ms := markers(t, st)
	if len(ms) != 2 || ms[0].Key != genKey(1) || ms[1].Key != keyPrefix+ms[0].Value {
		t.Fatalf("keys stored: %v, want one generation and its key", markerKeys(ms))
	}
	kid := ms[0].Value
	for i, s := range svcs {
		tok, _ := issue(t, s)
		if got := kidOfToken(t, tok); got != kid {
			t.Errorf("Service %d signs with %s, want %s", i, got, kid)
		}
		for j, v := range svcs {
			if _, err := v.Verify(context.Background(), tok, testAud); err != nil {
				t.Errorf("Service %d refuses a token of Service %d: %v", j, i, err)
			}
		}
	}
	// Every stored key marker expires, far ahead.
	for _, m := range ms {
		if m.Until.Before(c.Now().AddDate(99, 0, 0)) {
			t.Errorf("marker %s until %v", m.Key, m.Until)
		}
	}
	// A later NewService reads (one ListMarkers) and writes nothing.
	cnt.n.Store(0)
	newService(t, cnt, c, Options{})
	if got := cnt.n.Load(); got != 1 {
		t.Errorf("warm NewService made %d store calls, want 1", got)
	}
}

func TestRotation(t *testing.T) {
	c := newClock()
	st := newStore(t, c)
	ctx := context.Background()
	a := newService(t, st, c, Options{})
	b := newService(t, st, c, Options{}) // another instance
	old := signing(t, a)
	oldTok, _ := issue(t, a, pullPush("team/app"))
	oldRefresh, _, err := a.IssueRefresh(ctx, "alice", testAud)
	if err != nil {
		t.Fatal(err)
	}
	rotated := c.Now()
	if err := a.Rotate(ctx); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	ms := markers(t, st)
	if len(ms) != 4 {
		t.Fatalf("after Rotate: %v, want two generations and their keys", markerKeys(ms))
	}
	newKid := ms[1].Value
	if ms[1].Key != genKey(2) || newKid == old.kid {
		t.Fatalf("after Rotate: %v", markerKeys(ms))
	}
	retire := rotated.Add(activationDelay + a.grace)
	for _, m := range ms {
		want := c.Now().AddDate(farFutureYears, 0, 0)
		if m.Key == genKey(1) || m.Key == keyPrefix+old.kid {
			want = retire
		}
		if m.Until.UnixMilli() != want.UnixMilli() {
			t.Errorf("marker %s until %v, want %v", m.Key, m.Until, want)
		}
	}
	// The new key verifies at once, signs after activationDelay.
	tok, _ := issue(t, a)
	if got := kidOfToken(t, tok); got != old.kid {
		t.Errorf("signed with %s right after Rotate, want the old key until activation", got)
	}
	c.Add(activationDelay - time.Second)
	tok, _ = issue(t, b)
	if got := kidOfToken(t, tok); got != old.kid {
		t.Errorf("other instance signed with %s before activation", got)
	}
	c.Add(time.Second)
	newTok, _ := issue(t, a)
	if got := kidOfToken(t, newTok); got != newKid {
		t.Errorf("signed with %s after activation, want %s", got, newKid)
	}
	bTok, _ := issue(t, b) // b read the keys a second ago: it knows the new key
	if got := kidOfToken(t, bTok); got != newKid {
		t.Errorf("other instance signed with %s after activation, want %s", got, newKid)
	}
	for _, s := range []*Service{a, b} {
		for _, tk := range []string{oldTok, newTok, bTok} {
			if _, err := s.Verify(ctx, tk, testAud); err != nil {
				t.Errorf("Verify after rotation: %v", err)
			}
		}
	}
	// The old key verifies until it retires, then is dropped.
	c.Add(retire.Sub(c.Now()) - time.Second)
	if _, err := a.VerifyRefresh(ctx, oldRefresh, testAud); !errors.Is(err, ErrInvalid) {
		t.Errorf("old refresh token after its expiry: %v", err)
	}
	fresh := signES256(t, old.priv, map[string]any{"kid": old.kid}, claimsAt(c.Now()))
	for _, s := range []*Service{a, b} {
		if _, err := s.Verify(ctx, fresh, testAud); err != nil {
			t.Errorf("old key refused before retirement: %v", err)
		}
	}
	c.Add(time.Second)
	fresh = signES256(t, old.priv, map[string]any{"kid": old.kid}, claimsAt(c.Now()))
	for _, s := range []*Service{a, b} {
		_, err := s.Verify(ctx, fresh, testAud)
		checkRefused(t, err, fresh, rRetired)
	}
	ms = markers(t, st)
	if len(ms) != 2 || ms[0].Key != genKey(2) {
		t.Errorf("after retirement: %v, want generation 2 only", markerKeys(ms))
	}
	late := newService(t, st, c, Options{})
	if _, ok := late.keys.Load().byKid[old.kid]; ok {
		t.Error("a Service started after retirement knows the old key")
	}
	tok, _ = issue(t, late)
	if _, err := a.Verify(ctx, tok, testAud); err != nil || kidOfToken(t, tok) != newKid {
		t.Errorf("after retirement: %v", err)
	}
}

func TestRotateRace(t *testing.T) {
	c := newClock()
	st := newStore(t, c)
	ctx := context.Background()
	a := newService(t, st, c, Options{})
	b := newService(t, st, c, Options{})
	g := newGate(st, 2)
	a.store, b.store = g, g
	var wg sync.WaitGroup
	var ea, eb error
	wg.Go(func() { ea = a.Rotate(ctx) })
	wg.Go(func() { eb = b.Rotate(ctx) })
	wg.Wait()
	if ea != nil || eb != nil {
		t.Fatalf("Rotate: %v, %v", ea, eb)
	}
	ms := markers(t, st)
	if len(ms) != 4 || ms[1].Key != genKey(2) {
		t.Fatalf("after racing rotations: %v, want two generations and their keys", markerKeys(ms))
	}
	c.Add(activationDelay)
	ta, _ := issue(t, a)
	tb, _ := issue(t, b)
	if kidOfToken(t, ta) != ms[1].Value || kidOfToken(t, tb) != ms[1].Value {
		t.Errorf("after racing rotations, signing with %s and %s, want %s", kidOfToken(t, ta), kidOfToken(t, tb), ms[1].Value)
	}
	// A rotation soon after another: each key activates in turn.
	if err := a.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	ms = markers(t, st)
	if len(ms) != 6 || ms[2].Key != genKey(3) {
		t.Fatalf("after a third rotation: %v", markerKeys(ms))
	}
	c.Add(activationDelay)
	ta, _ = issue(t, a)
	if kidOfToken(t, ta) != ms[2].Value {
		t.Errorf("third generation not signing")
	}
	for _, tk := range []string{tb, ta} {
		if _, err := b.Verify(ctx, tk, testAud); err != nil {
			t.Errorf("Verify: %v", err)
		}
	}
}

func TestVerifyNoStoreCalls(t *testing.T) {
	c := newClock()
	st := newStore(t, c)
	cnt := &counting{ProxyMetadata: st}
	s := newService(t, cnt, c, Options{})
	ctx := context.Background()
	good, _ := issue(t, s, pullPush("team/app"))
	refresh, _, err := s.IssueRefresh(ctx, "alice", testAud)
	if err != nil {
		t.Fatal(err)
	}
	foreign, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	foreignKid, _ := kidOf(&foreign.PublicKey)
	unknown := signES256(t, foreign, map[string]any{"kid": foreignKid}, claimsAt(c.Now()))
	cnt.n.Store(0)
	for range 100 {
		c.Add(100 * time.Millisecond)
		if _, err := s.Verify(ctx, good, testAud); err != nil {
			t.Fatal(err)
		}
		if _, err := s.VerifyRefresh(ctx, refresh, testAud); err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"garbage", refresh, good[:len(good)-2] + "AA", unknown} {
			if _, err := s.Verify(ctx, bad, testAud); err == nil {
				t.Fatal("accepted")
			}
		}
		if _, err := s.Verify(ctx, good, "other"); err == nil {
			t.Fatal("accepted")
		}
	}
	if got := cnt.n.Load(); got != 0 {
		t.Errorf("Verify made %d store calls after warm-up, want 0", got)
	}
}

func TestUnknownKidReload(t *testing.T) {
	c := newClock()
	st := newStore(t, c)
	cnt := &counting{ProxyMetadata: st}
	s := newService(t, cnt, c, Options{})
	ctx := context.Background()
	foreign, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	foreignKid, _ := kidOf(&foreign.PublicKey)
	calls := func() int64 { cnt.lists.Store(0); return cnt.n.Swap(0) }
	calls()
	c.Add(keyRefresh)
	// Implausible tokens never read the store.
	for _, cl := range []map[string]any{
		with(claimsAt(c.Now()), "aud", "other"),
		with(claimsAt(c.Now()), "iss", "other"),
		with(claimsAt(c.Now()), "use", "refresh"),
		with(claimsAt(c.Now()), "exp", c.Now().Unix()-10),
	} {
		tok := signES256(t, foreign, map[string]any{"kid": foreignKid}, cl)
		if _, err := s.Verify(ctx, tok, testAud); err == nil {
			t.Fatal("accepted")
		}
	}
	short := signES256(t, foreign, map[string]any{"kid": "k1"}, claimsAt(c.Now()))
	if _, err := s.Verify(ctx, short, testAud); err == nil {
		t.Fatal("accepted")
	}
	if got := calls(); got != 0 {
		t.Errorf("implausible tokens with unknown kids made %d store calls", got)
	}
	// A plausible one reads the keys, at most once a minute.
	unknown := signES256(t, foreign, map[string]any{"kid": foreignKid}, claimsAt(c.Now()))
	for range 5 {
		_, err := s.Verify(ctx, unknown, testAud)
		checkRefused(t, err, unknown, rUnknownKid)
	}
	if lists, got := cnt.lists.Load(), calls(); lists != 1 || got != 1 {
		t.Errorf("unknown kid: %d reads, %d calls, want 1", lists, got)
	}
	c.Add(keyRefresh - time.Second)
	unknown = signES256(t, foreign, map[string]any{"kid": foreignKid}, claimsAt(c.Now()))
	_, _ = s.Verify(ctx, unknown, testAud)
	if got := calls(); got != 0 {
		t.Errorf("unknown kid within a minute: %d calls, want 0", got)
	}
	c.Add(time.Second)
	unknown = signES256(t, foreign, map[string]any{"kid": foreignKid}, claimsAt(c.Now()))
	_, _ = s.Verify(ctx, unknown, testAud)
	if got := calls(); got != 1 {
		t.Errorf("unknown kid a minute later: %d calls, want 1", got)
	}

	// A key added by another instance: learnt from its first token.
	other := newService(t, st, c, Options{})
	c.Add(keyRefresh)
	if err := other.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	// Garbage with a plausible unknown kid burns this minute's read …
	c.Add(time.Second)
	_, _ = s.Verify(ctx, signES256(t, foreign, map[string]any{"kid": foreignKid}, claimsAt(c.Now())), testAud)
	calls()
	// … which saw the new key anyway (TestActivationBeatsRateLimit covers
	// a read before the rotation).
	c.Add(activationDelay)
	tok, _ := issue(t, other)
	calls()
	if _, err := s.Verify(ctx, tok, testAud); err != nil {
		t.Errorf("token of a rotated-in key: %v", err)
	}
	if got := calls(); got != 0 {
		t.Errorf("%d calls verifying a key read before", got)
	}
}

// TestActivationBeatsRateLimit: a Service that last read the keys before a
// rotation, and had its minute's read spent on garbage just before, still
// verifies the first token of the new key.
func TestActivationBeatsRateLimit(t *testing.T) {
	c := newClock()
	st := newStore(t, c)
	cnt := &counting{ProxyMetadata: st}
	ctx := context.Background()
	rotator := newService(t, st, c, Options{})
	v := newService(t, cnt, c, Options{})
	foreign, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	foreignKid, _ := kidOf(&foreign.PublicKey)
	c.Add(keyRefresh)
	_, _ = v.Verify(ctx, signES256(t, foreign, map[string]any{"kid": foreignKid}, claimsAt(c.Now())), testAud) // spends the read
	c.Add(time.Second)
	if err := rotator.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	c.Add(activationDelay)
	tok, _ := issue(t, rotator)
	if kidOfToken(t, tok) == signing(t, v).kid {
		t.Fatal("still the old key")
	}
	cnt.n.Store(0)
	if _, err := v.Verify(ctx, tok, testAud); err != nil {
		t.Errorf("first token of a rotated-in key: %v", err)
	}
	if got := cnt.n.Load(); got != 1 {
		t.Errorf("%d store calls, want 1 (a read)", got)
	}
}

func TestPEM(t *testing.T) {
	c := newClock()
	st := newStore(t, c)
	cnt := &counting{ProxyMetadata: st}
	ctx := context.Background()
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der1, _ := x509.MarshalPKCS8PrivateKey(k1)
	der2, _ := x509.MarshalECPrivateKey(k2)
	pub2, _ := x509.MarshalPKIXPublicKey(&k2.PublicKey)
	p1 := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der1})
	p2 := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der2})
	pp2 := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub2})

	old := newService(t, cnt, c, Options{PEM: p2}) // SEC 1
	oldTok, _ := issue(t, old)
	// Rotation by the operator: new key first, old one as a public key.
	s := newService(t, cnt, c, Options{PEM: append(append([]byte{}, p1...), pp2...)})
	if got := cnt.n.Load(); got != 0 {
		t.Errorf("PEM Services made %d store calls", got)
	}
	tok, _ := issue(t, s)
	kid1, _ := kidOf(&k1.PublicKey)
	if kidOfToken(t, tok) != kid1 {
		t.Errorf("PEM Service signs with %s, want the first key %s", kidOfToken(t, tok), kid1)
	}
	for _, tk := range []string{tok, oldTok} {
		if _, err := s.Verify(ctx, tk, testAud); err != nil {
			t.Errorf("Verify: %v", err)
		}
	}
	if _, err := old.Verify(ctx, tok, testAud); !errors.Is(err, ErrInvalid) {
		t.Errorf("old Service accepted the new key: %v", err)
	}
	if err := s.Rotate(ctx); err == nil {
		t.Error("Rotate with PEM keys succeeded")
	}
	if got := cnt.n.Load(); got != 0 || len(markers(t, st)) != 0 {
		t.Errorf("PEM Services made %d store calls", got)
	}
	if _, err := NewService(ctx, nil, Options{Issuer: testIss, PEM: pp2}); err == nil {
		t.Error("PEM without private key accepted")
	}
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaDER, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384DER, _ := x509.MarshalPKCS8PrivateKey(p384)
	for _, b := range [][]byte{
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: rsaDER}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p384DER}),
		append(append([]byte{}, p1...), "trailing"...),
	} {
		_, err := NewService(ctx, nil, Options{Issuer: testIss, PEM: b})
		if err == nil {
			t.Errorf("PEM %.40q accepted", b)
		} else if strings.Contains(err.Error(), base64.StdEncoding.EncodeToString(rsaDER)[:40]) {
			t.Errorf("error quotes the key: %v", err)
		}
	}
}

// TestStoreErrors: a corrupt key record fails NewService without quoting
// the key; a Service whose store fails keeps its cached keys.
func TestStoreErrors(t *testing.T) {
	c := newClock()
	st := newStore(t, c)
	ctx := context.Background()
	s := newService(t, st, c, Options{})
	k := signing(t, s)
	item, err := st.GetMarker(ctx, keyGroup, keyPrefix+k.kid)
	if err != nil {
		t.Fatal(err)
	}
	var rec keyRecord
	if err := json.Unmarshal([]byte(item.Value), &rec); err != nil {
		t.Fatal(err)
	}
	// The record holds a PKCS #8 P-256 key whose kid is its thumbprint.
	if rec.V != 1 || rec.Alg != "ES256" || rec.Kid != k.kid || !rec.Created.Equal(c.Now()) {
		t.Errorf("record %+v", rec)
	}
	bad := rec
	bad.Kid = strings.Repeat("A", kidLen)
	b, _ := json.Marshal(bad)
	item.Value = string(b)
	if err := st.PutMarker(ctx, item); err != nil {
		t.Fatal(err)
	}
	_, err = NewService(ctx, st, Options{Issuer: testIss, Now: c.Now})
	if err == nil {
		t.Fatal("NewService accepted a record whose kid is not its key's")
	}
	if strings.Contains(err.Error(), rec.Key[:40]) {
		t.Errorf("error quotes the key: %v", err)
	}
	// The running Service keeps its keys when a read fails.
	tok, _ := issue(t, s)
	c.Add(keyRefresh)
	tok2, _ := issue(t, s) // the read fails; signs with the cached key
	for _, tk := range []string{tok, tok2} {
		if _, err := s.Verify(ctx, tk, testAud); err != nil {
			t.Errorf("Verify: %v", err)
		}
	}
}

// TestDeletedKeys: keys deleted from the store (revocation) are dropped
// when a Service next reads them; Issue then creates a new generation.
func TestDeletedKeys(t *testing.T) {
	c := newClock()
	st := newStore(t, c)
	ctx := context.Background()
	s := newService(t, st, c, Options{})
	tok, _ := issue(t, s)
	oldKid := kidOfToken(t, tok)
	if err := st.DeleteMarker(ctx, keyGroup, keyPrefix+oldKid); err != nil {
		t.Fatal(err)
	}
	c.Add(keyRefresh)
	tok2, _ := issue(t, s)
	if kidOfToken(t, tok2) == oldKid {
		t.Fatal("signed with a deleted key")
	}
	_, err := s.Verify(ctx, tok, testAud)
	checkRefused(t, err, tok, rUnknownKid)
	if _, err := s.Verify(ctx, tok2, testAud); err != nil {
		t.Fatal(err)
	}
	ms := markers(t, st)
	if len(ms) != 3 || ms[1].Key != genKey(2) {
		t.Fatalf("after deletion: %v, want the dangling generation 1 and generation 2", markerKeys(ms))
	}
	// Rotate removes the dangling slot and old orphan key items.
	orphan, v, _ := newKey(c.Now())
	if err := st.PutMarker(ctx, storage.Marker{Group: keyGroup, Key: keyPrefix + orphan.kid, Value: v, Until: farFuture(c.Now())}); err != nil {
		t.Fatal(err)
	}
	young, v2, _ := newKey(c.Now().Add(orphanAge))
	c.Add(orphanAge)
	if err := st.PutMarker(ctx, storage.Marker{Group: keyGroup, Key: keyPrefix + young.kid, Value: v2, Until: farFuture(c.Now())}); err != nil {
		t.Fatal(err)
	}
	if err := s.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	ms = markers(t, st)
	got := markerKeys(ms)
	want := []string{genKey(2), genKey(3), keyPrefix + kidOfToken(t, tok2), keyPrefix + ms[1].Value, keyPrefix + young.kid}
	if len(got) != len(want) || !contains(got, want...) {
		t.Errorf("after Rotate: %v, want %v", got, want)
	}
}

func contains(list []string, xs ...string) bool {
	for _, x := range xs {
		found := false
		for _, l := range list {
			found = found || l == x
		}
		if !found {
			return false
		}
	}
	return true
}

// FuzzVerify checks that Verify and VerifyRefresh never panic, refuse with
// a fixed reason, and accept nothing but the tokens Issue produced.
func FuzzVerify(f *testing.F) {
	c := newClock()
	st := newStore(f, c)
	s := newService(f, st, c, Options{})
	ctx := context.Background()
	k := signing(f, s)
	access, _, err := s.Issue(ctx, "alice", testAud, []Access{pullPush("team/app"), {Type: "registry", Name: "catalog", Actions: []string{"*"}}})
	if err != nil {
		f.Fatal(err)
	}
	anon, _, err := s.Issue(ctx, "", testAud, nil)
	if err != nil {
		f.Fatal(err)
	}
	refresh, _, err := s.IssueRefresh(ctx, "alice", testAud)
	if err != nil {
		f.Fatal(err)
	}
	issuedAccess := map[string]bool{access: true, anon: true}
	issuedRefresh := map[string]bool{refresh: true}
	now := c.Now()
	cl := claimsAt(now)
	kidH := map[string]any{"kid": k.kid}
	pubRaw, _ := k.pub.Bytes()
	foreign, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, seed := range []string{
		access, anon, refresh, "", "..", "a.b.c", "garbage",
		segment(f, map[string]any{"alg": "none", "typ": "JWT", "kid": k.kid}) + "." + segment(f, cl) + ".",
		signWith(f, jwt.SigningMethodHS256, pubRaw, kidH, cl),
		signWith(f, jwt.SigningMethodHS512, pubRaw, kidH, cl),
		signES256(f, foreign, kidH, cl),
		signES256(f, foreign, kidH, with(cl, "use", "refresh", "access", nil)),
		signES256(f, k.priv, kidH, with(cl, "nbf", now.Unix()+100)), // signed by the key, refused
		signES256(f, k.priv, kidH, with(cl, "use", "refresh", "exp", now.Unix()+60)),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		for _, refresh := range []bool{false, true} {
			verify, issued := s.Verify, issuedAccess
			if refresh {
				verify, issued = s.VerifyRefresh, issuedRefresh
			}
			c, err := verify(ctx, tok, testAud)
			if err == nil {
				if !issued[tok] {
					t.Fatalf("accepted a token Issue did not produce (refresh %v): %q → %+v", refresh, tok, c)
				}
				continue
			}
			checkRefused(t, err, tok, "")
		}
	})
}
