//go:build bench

package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"
	"golang.org/x/crypto/bcrypt"

	"github.com/airlock-registry/airlock/localdev/harness"
	"github.com/airlock-registry/airlock/shared/auth"
	"github.com/airlock-registry/airlock/shared/auth/ident"
	"github.com/airlock-registry/airlock/shared/awscount"
	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/registry"
	"github.com/airlock-registry/airlock/shared/storage/dynamo"
	"github.com/airlock-registry/airlock/shared/storage/s3store"
)

// authYAML is registryYAML with authentication on: one role that may read
// (and browse) the hosted repository.
const authYAML = registryYAML + `auth:
  roles:
  - name: bench-read
    privileges:
    - repositories: [local]
      actions: [read, browse]
`

// Part 6's fixed inputs.
const (
	authImage    = "local/bench/auth" // the name the client uses (t.full, the token scope's name)
	authUser     = "reader"           // has bench-read
	authPassword = "bench-password-1234"
	authSamples  = 30 // token requests per latency row
)

// itemCounter counts DynamoDB calls per operation and item kind: the marker
// group of a MARK#<group> key ("authusers", "authlogin" for
// authlogin:<name>, ...) or the prefix of any other key (IMG, BLOB, ...).
// awscount counts operations only; this tells a user read from a
// failure-slot read.
type itemCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *itemCounter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n = nil
}

func (c *itemCounter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.n)
}

// option is the dynamodb.Options.APIOptions entry (Initialize step: one
// count per call, retries not counted again).
func (c *itemCounter) option() func(*middleware.Stack) error {
	return func(s *middleware.Stack) error {
		return s.Initialize.Add(middleware.InitializeMiddlewareFunc("bench.itemCounter",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				op, kind := itemOf(in.Parameters)
				c.mu.Lock()
				if c.n == nil {
					c.n = map[string]int{}
				}
				c.n[op+" "+kind]++
				c.mu.Unlock()
				return next.HandleInitialize(ctx, in)
			}), middleware.After)
	}
}

// itemOf names a DynamoDB call's operation and the kind of item it addresses.
func itemOf(params any) (op, kind string) {
	pkOf := func(m map[string]types.AttributeValue) string {
		if s, ok := m["pk"].(*types.AttributeValueMemberS); ok {
			return s.Value
		}
		return ""
	}
	var pk string
	switch in := params.(type) {
	case *dynamodb.GetItemInput:
		op, pk = "Get", pkOf(in.Key)
	case *dynamodb.PutItemInput:
		op, pk = "Put", pkOf(in.Item)
	case *dynamodb.UpdateItemInput:
		op, pk = "Update", pkOf(in.Key)
	case *dynamodb.DeleteItemInput:
		op, pk = "Delete", pkOf(in.Key)
	case *dynamodb.QueryInput:
		op = "Query"
		for _, k := range slices.Sorted(maps.Keys(in.ExpressionAttributeValues)) {
			if s, ok := in.ExpressionAttributeValues[k].(*types.AttributeValueMemberS); ok && strings.Contains(s.Value, "#") {
				pk = s.Value
				break
			}
		}
	default:
		return strings.TrimSuffix(strings.TrimPrefix(fmt.Sprintf("%T", params), "*dynamodb."), "Input"), "?"
	}
	if g, ok := strings.CutPrefix(pk, "MARK#"); ok {
		g, _, _ = strings.Cut(g, ":")
		return op, g
	}
	p, _, _ := strings.Cut(pk, "#")
	if p == "" {
		p = "?"
	}
	return op, p
}

// itemDetail lists item counts as "Get authusers×1 Query authlogin×1".
func itemDetail(m map[string]int) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// bearerTransport adds the bearer token to requests for the registry's
// host only (never to the presigned S3 GETs the blob redirects lead to),
// as a docker client's per-registry authorizer does; a request that has
// its own Authorization (HTTP Basic to the token endpoint) keeps it.
type bearerTransport struct {
	host string
	tok  atomic.Pointer[string]
	base http.RoundTripper
}

func (t *bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if tok := t.tok.Load(); tok != nil && r.URL.Host == t.host && r.Header.Get("Authorization") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+*tok)
	}
	return t.base.RoundTrip(r)
}

// newBearerClient is newClient whose requests to base carry the token set
// in the returned transport (none until set).
func newBearerClient(base string) (*client, *bearerTransport) {
	u, _ := url.Parse(base)
	bt := &bearerTransport{host: u.Host, base: &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: time.Minute}}
	return &client{
		base: base,
		hc: &http.Client{Transport: bt, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
		follow: &http.Client{Transport: bt},
	}, bt
}

// newAuthAirlock is newAirlock with the configuration yaml and auth options.
func newAuthAirlock(ctx context.Context, db *dynamodb.Client, table string, blobs *s3store.Store, yaml string, o auth.Options) (*registry.Registry, error) {
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		return nil, err
	}
	return registry.New(registry.Deps{Meta: dynamo.New(db, table), Blobs: blobs, Config: cfg, AuthOptions: o})
}

// tokenReq asks the token endpoint for scopes with HTTP Basic user:secret
// (user "" sends no credentials) and returns the token, the status and the
// time taken.
func tokenReq(ctx context.Context, hc *http.Client, base, user, secret string, scopes ...string) (string, int, time.Duration, error) {
	u, _ := url.Parse(base)
	q := url.Values{"service": {u.Host}, "scope": scopes}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/token?"+q.Encode(), nil)
	if user != "" {
		req.SetBasicAuth(user, secret)
	}
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return "", 0, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	d := time.Since(start)
	if err != nil {
		return "", resp.StatusCode, d, err
	}
	var doc struct {
		Token string `json:"token"`
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &doc); err != nil || doc.Token == "" {
			return "", resp.StatusCode, d, fmt.Errorf("token response %q: no token", b)
		}
	}
	return doc.Token, resp.StatusCode, d, nil
}

// status sends one request (no redirect followed) and returns its status and
// WWW-Authenticate header.
func status(ctx context.Context, hc *http.Client, method, u string) (int, string, error) {
	req, _ := http.NewRequestWithContext(ctx, method, u, nil)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("Www-Authenticate"), nil
}

// percentile returns the p-th percentile (nearest rank) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func mean(ds []time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}

// ms formats a duration in milliseconds.
func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// benchAuth measures what authentication adds to a hosted pull (AWS calls,
// counted like part 1) and the token endpoint's latency with the default
// bcrypt cost, and Verify's cost per request.
func benchAuth(t *testing.T, rep *report, dynamoURL, s3URL string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var counter awscount.Counter
	var items itemCounter
	db, s3c, err := awsClients(ctx, dynamoURL, s3URL, &counter)
	if err != nil {
		t.Fatal(err)
	}
	db = dynamodb.New(db.Options(), func(o *dynamodb.Options) {
		o.APIOptions = append(slices.Clip(o.APIOptions), items.option())
	})
	const table, bucket = "bench-auth", "airlock-auth"
	if err := harness.CreateTable(ctx, db, table); err != nil {
		t.Fatal(err)
	}
	if err := harness.CreateBucket(ctx, s3c, bucket); err != nil {
		t.Fatal(err)
	}
	blobs := s3store.New(s3c, bucket)
	// Two registries on the same table and bucket: auth off (pushes the
	// image, and is the baseline pull) and auth on. The auth clock can be
	// moved forward (never back) to age the cached signing keys.
	var shift atomic.Int64
	authNow := func() time.Time { return time.Now().Add(time.Duration(shift.Load())) }
	off, err := newAuthAirlock(ctx, db, table, blobs, registryYAML, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	on, err := newAuthAirlock(ctx, db, table, blobs, authYAML, auth.Options{Now: authNow}) // BcryptCost 0: ident's default
	if err != nil {
		t.Fatal(err)
	}
	srvOff := httptest.NewServer(off)
	defer srvOff.Close()
	srvOn := httptest.NewServer(on)
	defer srvOn.Close()
	users := on.Auth().Users
	if err := users.CreateUser(ctx, authUser, authPassword, []string{"bench-read"}); err != nil && !errors.Is(err, ident.ErrExists) {
		t.Fatal(err)
	}
	apiToken, _, err := users.CreateToken(ctx, authUser, "bench", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dynamo.New(db, table).GetMarker(ctx, "authusers", authUser)
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Hash string `json:"hash"`
	}
	if err := json.Unmarshal([]byte(m.Value), &rec); err != nil {
		t.Fatal(err)
	}
	cost, err := bcrypt.Cost([]byte(rec.Hash))
	if err != nil {
		t.Fatal(err)
	}

	im := newImage(6000, 5, 2<<20)
	clOff := newClient(srvOff.URL)
	if err := clOff.pushImage(ctx, authImage, "v1", im, 0); err != nil {
		t.Fatal(err)
	}
	clOn, bt := newBearerClient(srvOn.URL)
	scope := "repository:" + authImage + ":pull"
	nreq := 2 + len(im.layers) // manifest, config, layers
	aud := strings.TrimPrefix(srvOn.URL, "http://")
	// checkTok makes sure a token is what the request was meant to get: the
	// user's, granting pull (anonymous: refused pull).
	checkTok := func(svc *auth.Service, tk, user string) error {
		c, err := svc.Verify(ctx, tk, aud)
		if err != nil {
			return fmt.Errorf("token of %q: %w", user, err)
		}
		if c.Subject != user || c.Allows("repository", authImage, "pull") != (user != "") {
			return fmt.Errorf("token of %q: subject %q, access %+v", user, c.Subject, c.Access)
		}
		return nil
	}

	sec := rep.section(fmt.Sprintf("6a. Authentication: AWS calls of an authenticated pull of a %d-layer image (Airlock in-process on dynalite + versitygw, awscount; auth: {roles: [bench-read: read on local]}, user %q with bench-read) next to the same pull with auth off", len(im.layers), authUser),
		"operation", "requests", "DDB reads", "DDB writes", "S3 calls", "DynamoDB detail", "DynamoDB items", "added by auth", "target", "")
	measure := func(f func() error) (calls, map[string]int) {
		t.Helper()
		counter.Reset()
		items.reset()
		if err := f(); err != nil {
			t.Fatal(err)
		}
		return classify(counter.Snapshot()), items.snapshot()
	}
	added := func(c calls, base calls, n int) string {
		d := func(a, b int) string {
			if n <= 1 {
				return fmt.Sprintf("%+d", a-b)
			}
			return fmt.Sprintf("%+d (%+.2g/req)", a-b, float64(a-b)/float64(n))
		}
		return fmt.Sprintf("R %s W %s S3 %s", d(c.ddbR, base.ddbR), d(c.ddbW, base.ddbW), d(c.s3, base.s3))
	}
	addRow := func(op string, n int, c calls, it map[string]int, add, target string, ok bool, check bool) {
		v := "-"
		if target != "-" {
			v = verdict(ok)
		}
		sec.row(op, fmt.Sprint(n), fmt.Sprint(c.ddbR), fmt.Sprint(c.ddbW), fmt.Sprint(c.s3), c.detail("DynamoDB"), itemDetail(it), add, target, v)
		if check && !ok {
			t.Errorf("%s: DynamoDB reads %d, writes %d, S3 calls %d (%s): target %s missed", op, c.ddbR, c.ddbW, c.s3, itemDetail(it), target)
		}
	}
	zero := calls{}
	userReads := func(it map[string]int) int { return it["Get authusers"] + it["Query authusers"] }

	pull := func(cl *client) func() error {
		return func() error {
			n, err := cl.pullImage(ctx, authImage, "v1")
			if err == nil && n != im.total()+int64(len(im.config)) {
				err = fmt.Errorf("pulled %d bytes, want %d", n, im.total()+int64(len(im.config)))
			}
			return err
		}
	}
	// Warm both (first requests pay for connections, not for AWS calls, but
	// keep the counted runs alike).
	if err := pull(clOff)(); err != nil {
		t.Fatal(err)
	}
	pullLabel := fmt.Sprintf("pull (manifest + config + %d layers, %s via presigned URLs)", len(im.layers), mib(im.total()))
	base, baseItems := measure(pull(clOff))
	addRow("auth off: "+pullLabel, nreq, base, baseItems, "(baseline)", "-", true, false)

	c, it := measure(func() error {
		st, wa, err := status(ctx, clOn.hc, http.MethodGet, srvOn.URL+"/v2/")
		if err == nil && (st != http.StatusUnauthorized || !strings.HasPrefix(wa, "Bearer ")) {
			err = fmt.Errorf("GET /v2/ without a token: status %d, WWW-Authenticate %q", st, wa)
		}
		return err
	})
	addRow("auth on: GET /v2/ without a token (401 Bearer challenge)", 1, c, it, added(c, zero, 1), "0 calls", c.ddbR+c.ddbW+c.s3 == 0, false)
	c, it = measure(func() error {
		st, wa, err := status(ctx, clOn.hc, http.MethodGet, srvOn.URL+"/v2/"+authImage+"/manifests/v1")
		if err == nil && (st != http.StatusUnauthorized || !strings.Contains(wa, scope)) {
			err = fmt.Errorf("manifest GET without a token: status %d, WWW-Authenticate %q", st, wa)
		}
		return err
	})
	addRow("auth on: manifest GET without a token (401 with scope)", 1, c, it, added(c, zero, 1), "0 calls", c.ddbR+c.ddbW+c.s3 == 0, false)

	var tok string
	tokenRow := func(label, user, secret string, want int) (calls, map[string]int) {
		c, it := measure(func() error {
			tk, st, _, err := tokenReq(ctx, clOn.hc, srvOn.URL, user, secret, scope)
			if err == nil && st != want {
				err = fmt.Errorf("%s: status %d, want %d", label, st, want)
			}
			if err == nil && st == http.StatusOK {
				err = checkTok(on.Auth(), tk, user)
				tok = tk
			}
			return err
		})
		tgt, ok := "user reads ≤ 1", userReads(it) <= 1
		addRow(label, 1, c, it, added(c, zero, 1), tgt, ok, true)
		return c, it
	}
	pw, _ := tokenRow("auth on: GET /v2/token, password (bcrypt), scope pull", authUser, authPassword, http.StatusOK)
	tokenRow("auth on: GET /v2/token, API token alk_… (SHA-256), scope pull", authUser, apiToken, http.StatusOK)
	tokenRow("auth on: GET /v2/token, anonymous (no credentials), scope pull", "", "", http.StatusOK)
	tokenRow("auth on: GET /v2/token, wrong password (401, a failure slot kept)", authUser, "wrong-password-1234", http.StatusUnauthorized)
	tokenRow("auth on: GET /v2/token, password after that failure (clears it)", authUser, authPassword, http.StatusOK)
	// The token service reads its keys again before signing once its copy
	// is a minute old (token.keyRefresh): age it with the auth clock.
	shift.Add(int64(61 * time.Second))
	tokenRow("auth on: GET /v2/token, password, signing keys cached > 1 min", authUser, authPassword, http.StatusOK)
	// Concurrent logins of one user (CI jobs sharing an account): each
	// holds one of the MaxFailures failure slots while bcrypt runs; beyond
	// those, attempts wait for a free slot, listing the group every 20 ms.
	const conc = 10
	concDur := make([]time.Duration, conc)
	concSt := make([]int, conc)
	cc, it := measure(func() error {
		var wg sync.WaitGroup
		errs := make([]error, conc)
		for i := range conc {
			wg.Go(func() {
				var tk string
				tk, concSt[i], concDur[i], errs[i] = tokenReq(ctx, clOn.hc, srvOn.URL, authUser, authPassword, scope)
				if errs[i] == nil && concSt[i] == http.StatusOK {
					errs[i] = checkTok(on.Auth(), tk, authUser)
				}
			})
		}
		wg.Wait()
		return errors.Join(errs...)
	})
	stCount := map[int]int{}
	for _, st := range concSt {
		stCount[st]++
	}
	var stText []string
	for _, st := range slices.Sorted(maps.Keys(stCount)) {
		stText = append(stText, fmt.Sprintf("%d× %d", stCount[st], st))
	}
	addRow(fmt.Sprintf("auth on: %d concurrent GET /v2/token, password, one user (%s)", conc, strings.Join(stText, ", ")), conc, cc, it,
		added(cc, zero, conc), fmt.Sprintf("user reads ≤ %d", conc), userReads(it) <= conc, true)
	bt.tok.Store(&tok)

	c, it = measure(func() error {
		st, _, err := status(ctx, clOn.hc, http.MethodGet, srvOn.URL+"/v2/")
		if err == nil && st != http.StatusOK {
			err = fmt.Errorf("GET /v2/ with a token: status %d", st)
		}
		return err
	})
	addRow("auth on: GET /v2/ with the token", 1, c, it, added(c, zero, 1), "added 0", c.ddbR+c.ddbW+c.s3 == 0, true)
	if err := pull(clOn)(); err != nil { // the same warm-up as auth off
		t.Fatal(err)
	}
	held, heldItems := measure(pull(clOn))
	same := held.ddbR == base.ddbR && held.ddbW == base.ddbW && held.s3 == base.s3
	addRow("auth on: "+pullLabel+", token held", nreq, held, heldItems, added(held, base, nreq), "added 0", same, true)
	for _, r := range []struct {
		label  string
		method string
		path   string
		want   int
	}{
		{"manifest GET by tag", http.MethodGet, "/manifests/v1", http.StatusOK},
		{"blob GET (307 to presigned S3 URL)", http.MethodGet, "/blobs/" + im.layers[0].digest.String(), http.StatusTemporaryRedirect},
	} {
		var cs [2]calls
		var its [2]map[string]int
		for i, cl := range []*client{clOff, clOn} {
			base := srvOff.URL
			if i == 1 {
				base = srvOn.URL
			}
			cs[i], its[i] = measure(func() error {
				st, _, err := status(ctx, cl.hc, r.method, base+"/v2/"+authImage+r.path)
				if err == nil && st != r.want {
					err = fmt.Errorf("%s: status %d, want %d", r.label, st, r.want)
				}
				return err
			})
		}
		addRow("auth off: "+r.label, 1, cs[0], its[0], "(baseline)", "-", true, false)
		ok := cs[1].ddbR == cs[0].ddbR && cs[1].ddbW == cs[0].ddbW && cs[1].s3 == cs[0].s3
		addRow("auth on: "+r.label+", token held", 1, cs[1], its[1], added(cs[1], cs[0], 1), "added 0", ok, true)
	}
	flow := pw.add(held)
	sec.row(fmt.Sprintf("auth on: a docker pull with credentials = /v2/ 401 + token (password) + %d requests", nreq), fmt.Sprint(nreq+2),
		fmt.Sprint(flow.ddbR), fmt.Sprint(flow.ddbW), fmt.Sprint(flow.s3), flow.detail("DynamoDB"), "(sum)", added(flow, base, 1), "-", "-")
	sec.note("added by auth: R/W = DynamoDB reads/writes, against the same request with auth off (token requests and challenges exist only with auth on); /req = per registry request")
	sec.note("DynamoDB items: authusers = the user's item; authlogin = the user's failed-login group (slot/NN, lock): a password login lists it (Query), takes a slot (conditional Put) and frees it (conditional Delete) — the lock-out design's price, paid by every password login; authtokens = an API token's record; authkeys = the signing keys; IMG/BLOB/... = registry items")
	sec.note("user reads ≤ 1: GetItem/Query of authusers per token issue; the test fails when a target is missed (counts are deterministic)")
	sec.note("concurrent logins of one user: every attempt lists the slots, then tries slot/01, /02, … in order with conditional Puts (a refused conditional write is still a write request, and consumes write capacity); attempts finding all %d slots in flight list again every 20 ms, for up to 3 s, then get 429", ident.DefaultMaxFailures)
	sec.note("docker asks the token endpoint on every pull (it keeps no token between runs), so each docker pull with a password pays one bcrypt comparison and the authlogin calls; the keys re-read happens at most once a minute per instance")

	// 6b: latency of the token endpoint and the cost of Verify.
	lat := rep.section(fmt.Sprintf("6b. Authentication: token endpoint latency (%d sequential GET /v2/token, HTTP Basic, scope pull, in-process on dynalite; bcrypt cost of the stored hash %d = ident.DefaultBcryptCost %d) and Verify per request", authSamples, cost, ident.DefaultBcryptCost),
		"measure", "n", "p50", "p95", "mean", "DDB calls/request", "")
	for _, l := range []struct {
		label, secret string
	}{
		{fmt.Sprintf("token endpoint, password login (bcrypt cost %d)", cost), authPassword},
		{"token endpoint, API token login (SHA-256, no bcrypt)", apiToken},
	} {
		ds := make([]time.Duration, 0, authSamples)
		counter.Reset()
		var toks []string
		for range authSamples {
			tk, st, d, err := tokenReq(ctx, clOn.hc, srvOn.URL, authUser, l.secret, scope)
			if err == nil && st != http.StatusOK {
				err = fmt.Errorf("%s: status %d", l.label, st)
			}
			if err != nil {
				t.Fatal(err)
			}
			ds = append(ds, d)
			toks = append(toks, tk)
		}
		lc := classify(counter.Snapshot())
		for _, tk := range toks {
			if err := checkTok(on.Auth(), tk, authUser); err != nil {
				t.Fatal(err)
			}
		}
		lat.row(l.label, fmt.Sprint(authSamples), ms(percentile(ds, 0.5)), ms(percentile(ds, 0.95)), ms(mean(ds)),
			fmt.Sprintf("%.1f", float64(lc.ddbR+lc.ddbW+lc.ddbOther)/authSamples), "")
	}
	lat.row(fmt.Sprintf("token endpoint, %d concurrent password logins of one user (6a)", conc), fmt.Sprint(conc),
		ms(percentile(concDur, 0.5)), ms(percentile(concDur, 0.95)), ms(mean(concDur)), fmt.Sprintf("%.1f", float64(cc.ddbR+cc.ddbW+cc.ddbOther)/conc), "")
	// The first password login of an instance also makes the dummy hash
	// (one bcrypt GenerateFromPassword at the same cost), whoever logs in:
	// a cold start's first login.
	const fresh = 5
	ds := make([]time.Duration, 0, fresh)
	counter.Reset()
	for range fresh {
		rg, err := newAuthAirlock(ctx, db, table, blobs, authYAML, auth.Options{Now: authNow})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(rg)
		counter.Reset()
		tk, st, d, err := tokenReq(ctx, clOn.hc, srv.URL, authUser, authPassword, scope)
		lc := classify(counter.Snapshot())
		srv.Close()
		if err == nil && st != http.StatusOK {
			err = fmt.Errorf("first login of a fresh instance: status %d", st)
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rg.Auth().Tokens.Verify(ctx, tk, strings.TrimPrefix(srv.URL, "http://")); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
		if len(ds) == fresh {
			lat.row(fmt.Sprintf("token endpoint, first password login of a fresh instance (makes the dummy hash too; %d instances)", fresh), fmt.Sprint(fresh),
				ms(percentile(ds, 0.5)), ms(percentile(ds, 0.95)), ms(mean(ds)), fmt.Sprint(lc.ddbR+lc.ddbW+lc.ddbOther), "")
		}
	}
	ds = make([]time.Duration, 0, authSamples)
	for range authSamples {
		start := time.Now()
		if err := bcrypt.CompareHashAndPassword([]byte(rec.Hash), []byte(authPassword)); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, time.Since(start))
	}
	lat.row(fmt.Sprintf("bcrypt.CompareHashAndPassword alone (cost %d)", cost), fmt.Sprint(authSamples), ms(percentile(ds, 0.5)), ms(percentile(ds, 0.95)), ms(mean(ds)), "0", "")
	svc := on.Auth().Tokens
	claims, err := svc.Verify(ctx, tok, aud)
	if err != nil || !claims.Allows("repository", authImage, "pull") {
		t.Fatalf("Verify of the pull token: %v (claims %+v)", err, claims)
	}
	counter.Reset()
	res := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := svc.Verify(ctx, tok, aud); err != nil {
				b.Fatal(err)
			}
		}
	})
	vc := classify(counter.Snapshot())
	lat.row(fmt.Sprintf("token.Service.Verify (Go benchmark, %d iterations)", res.N), fmt.Sprint(res.N),
		fmt.Sprintf("%d ns/op", res.NsPerOp()), "-", fmt.Sprintf("%d B/op, %d allocs/op", res.AllocedBytesPerOp(), res.AllocsPerOp()),
		fmt.Sprint(vc.ddbR+vc.ddbW+vc.ddbOther+vc.s3), "")
	lat.note("times include the HTTP round trip to the in-process server and the dynalite calls (local, ~ms each); other processes share the CPUs, so they are indicative")
	lat.note("Verify: ES256 signature check of the pull token (%d bytes) from the keys in memory; the 'DDB calls/request' cell counts every AWS call during the benchmark loop", len(tok))
}
