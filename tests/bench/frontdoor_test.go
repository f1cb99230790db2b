//go:build bench

package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock-registry/airlock/localdev/harness"
	"github.com/airlock-registry/airlock/shared/auth"
	"github.com/airlock-registry/airlock/shared/auth/ident"
	"github.com/airlock-registry/airlock/shared/awscount"
	"github.com/airlock-registry/airlock/shared/storage/s3store"
)

// Part 7's list prices (us-east-1, USD). Data transfer, free tiers and
// CloudWatch Logs are excluded.
const (
	priceAPIGW     = 1.00 / 1e6            // API Gateway HTTP API, per request (first 300 M a month)
	priceLambdaReq = 0.20 / 1e6            // Lambda, per request (invoke)
	priceLambdaGBs = 0.0000133334          // Lambda arm64, per GB-second
	priceRRU       = 0.125 / 1e6           // DynamoDB on-demand, per read request unit
	priceWRU       = 0.625 / 1e6           // DynamoDB on-demand, per write request unit
	priceS3GET     = 0.0004 / 1000         // S3 Standard GET, per request
	lambdaGB       = 1024.0 / 1024         // the function's memory (template.yaml: 1024 MB)
	durationFloor  = 20 * time.Millisecond // infra/README.md's assumed duration per request
)

// Part 7's fixed inputs.
const (
	fdImage  = "local/bench/frontdoor"
	fdLayers = 5
	fdPulls  = 20 // measured pulls (after one warm-up)
)

// capacityMeter makes every DynamoDB call ask for its consumed capacity
// (ReturnConsumedCapacity TOTAL, set on a copy of the input in the
// Initialize step) and sums what the emulator reports, as DynamoDB bills
// on-demand request units: reads per 4 KB of items read (a strongly
// consistent read 1 unit, eventually consistent ½), writes per 1 KB of the
// larger of the old and new item. A read that reports less than its
// minimum (dynalite reports 0 for a Query matching nothing; DynamoDB charges
// at least one unit per request, ½ eventually consistent) and a write that
// reports nothing (a refused conditional write, an error) are billed the
// minimum: the billed sums are at least the reported ones.
type capacityMeter struct {
	mu sync.Mutex
	m  meterSums
}

type meterSums struct {
	reads, writes, eventual, other int
	rruReported, rru               float64
	wruReported, wru               float64
	raised                         int // calls billed their minimum instead of the reported units
}

func (s meterSums) add(o meterSums) meterSums {
	return meterSums{
		reads: s.reads + o.reads, writes: s.writes + o.writes, eventual: s.eventual + o.eventual, other: s.other + o.other,
		rruReported: s.rruReported + o.rruReported, rru: s.rru + o.rru,
		wruReported: s.wruReported + o.wruReported, wru: s.wru + o.wru, raised: s.raised + o.raised,
	}
}

func (m *capacityMeter) take() meterSums {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.m
	m.m = meterSums{}
	return s
}

func (m *capacityMeter) option() func(*middleware.Stack) error {
	return func(s *middleware.Stack) error {
		return s.Initialize.Add(middleware.InitializeMiddlewareFunc("bench.capacityMeter",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				total := types.ReturnConsumedCapacityTotal
				kind, consistent := "other", false
				switch p := in.Parameters.(type) {
				case *dynamodb.GetItemInput:
					cp := *p
					cp.ReturnConsumedCapacity = total
					in.Parameters, kind, consistent = &cp, "read", aws.ToBool(p.ConsistentRead)
				case *dynamodb.QueryInput:
					cp := *p
					cp.ReturnConsumedCapacity = total
					in.Parameters, kind, consistent = &cp, "read", aws.ToBool(p.ConsistentRead)
				case *dynamodb.PutItemInput:
					cp := *p
					cp.ReturnConsumedCapacity = total
					in.Parameters, kind = &cp, "write"
				case *dynamodb.UpdateItemInput:
					cp := *p
					cp.ReturnConsumedCapacity = total
					in.Parameters, kind = &cp, "write"
				case *dynamodb.DeleteItemInput:
					cp := *p
					cp.ReturnConsumedCapacity = total
					in.Parameters, kind = &cp, "write"
				}
				out, md, err := next.HandleInitialize(ctx, in)
				var cc *types.ConsumedCapacity
				switch r := out.Result.(type) {
				case *dynamodb.GetItemOutput:
					cc = r.ConsumedCapacity
				case *dynamodb.QueryOutput:
					cc = r.ConsumedCapacity
				case *dynamodb.PutItemOutput:
					cc = r.ConsumedCapacity
				case *dynamodb.UpdateItemOutput:
					cc = r.ConsumedCapacity
				case *dynamodb.DeleteItemOutput:
					cc = r.ConsumedCapacity
				}
				var units float64
				if cc != nil {
					units = aws.ToFloat64(cc.CapacityUnits)
				}
				m.mu.Lock()
				defer m.mu.Unlock()
				switch kind {
				case "read":
					m.m.reads++
					minimum := 1.0
					if !consistent {
						m.m.eventual++
						minimum = 0.5
					}
					m.m.rruReported += units
					if units < minimum {
						m.m.raised++
						units = minimum
					}
					m.m.rru += units
				case "write":
					m.m.writes++
					m.m.wruReported += units
					if units < 1 {
						m.m.raised++
						units = 1
					}
					m.m.wru += units
				default:
					m.m.other++ // not metered (a pull makes none; reported if it does)
				}
				return out, md, err
			}), middleware.After)
	}
}

// timedHandler times each ServeHTTP of the registry handler: the function's
// work per request, without the network to the client.
type timedHandler struct {
	h  http.Handler
	mu sync.Mutex
	ds []time.Duration
}

func (th *timedHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	th.h.ServeHTTP(w, r)
	d := time.Since(start)
	th.mu.Lock()
	th.ds = append(th.ds, d)
	th.mu.Unlock()
}

func (th *timedHandler) take() []time.Duration {
	th.mu.Lock()
	defer th.mu.Unlock()
	ds := th.ds
	th.ds = nil
	return ds
}

// hostCounter counts the client's requests by host and method: those to the
// registry (through the front door) and the presigned GETs to S3.
type hostCounter struct {
	registry string // host:port
	base     http.RoundTripper
	mu       sync.Mutex
	n        map[string]int
}

func (h *hostCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	who := "S3"
	if r.URL.Host == h.registry {
		who = "registry"
	}
	h.mu.Lock()
	if h.n == nil {
		h.n = map[string]int{}
	}
	h.n[who+" "+r.Method]++
	h.mu.Unlock()
	return h.base.RoundTrip(r)
}

func (h *hostCounter) take() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.n
	h.n = nil
	return n
}

// fdStep is one kind of request of the pull, summed over the measured pulls.
type fdStep struct {
	label   string
	status  int
	reqs    int // registry requests (handler invocations)
	s3gets  int // presigned GETs to S3 by the client
	dur     []time.Duration
	aws     calls
	meter   meterSums
	items   map[string]int
	billed  time.Duration // Σ per request, rounded up to 1 ms (Lambda's billing granularity)
	floored time.Duration // Σ max(billed, durationFloor)
}

// billedMs rounds a duration up to whole milliseconds, as Lambda bills.
func billedMs(d time.Duration) time.Duration {
	return (d + time.Millisecond - 1).Truncate(time.Millisecond)
}

// benchFrontDoor measures a docker-style pull of a 5-layer image with auth
// on (password login) in process — requests, AWS calls, DynamoDB request
// units, presigned S3 GETs, the handler's time per request — and prices it
// per million pulls for each front door (API Gateway HTTP API or a Lambda
// function URL) from us-east-1 list prices.
func benchFrontDoor(t *testing.T, rep *report, dynamoURL, s3URL string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var counter awscount.Counter
	var items itemCounter
	var meter capacityMeter
	db, s3c, err := awsClients(ctx, dynamoURL, s3URL, &counter)
	if err != nil {
		t.Fatal(err)
	}
	db = dynamodb.New(db.Options(), func(o *dynamodb.Options) {
		o.APIOptions = append(slices.Clip(o.APIOptions), items.option(), meter.option())
	})
	const table, bucket = "bench-frontdoor", "airlock-frontdoor"
	if err := harness.CreateTable(ctx, db, table); err != nil {
		t.Fatal(err)
	}
	if err := harness.CreateBucket(ctx, s3c, bucket); err != nil {
		t.Fatal(err)
	}
	blobs := s3store.New(s3c, bucket)
	rg, err := newAuthAirlock(ctx, db, table, blobs, authYAML, auth.Options{}) // BcryptCost 0: ident's default
	if err != nil {
		t.Fatal(err)
	}
	th := &timedHandler{h: rg}
	srv := httptest.NewServer(th)
	defer srv.Close()
	if err := rg.Auth().Users.CreateUser(ctx, authUser, authPassword, []string{"bench-read"}); err != nil && !errors.Is(err, ident.ErrExists) {
		t.Fatal(err)
	}
	// The image is pushed through a registry with auth off on the same
	// table and bucket (as part 6 does): the reader may only pull.
	off, err := newAuthAirlock(ctx, db, table, blobs, registryYAML, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srvOff := httptest.NewServer(off)
	defer srvOff.Close()
	im := newImage(7000, fdLayers, 1<<20)
	if err := newClient(srvOff.URL).pushImage(ctx, fdImage, "v1", im, 0); err != nil {
		t.Fatal(err)
	}
	md := digest.FromBytes(im.manifest)

	u, _ := url.Parse(srv.URL)
	hc := &hostCounter{registry: u.Host, base: &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: time.Minute}}
	bt := &bearerTransport{host: u.Host, base: hc}
	noFollow := &http.Client{Transport: bt, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	follow := &http.Client{Transport: bt}
	scope := "repository:" + fdImage + ":pull"

	steps := []*fdStep{
		{label: "GET /v2/ without a token (Bearer challenge)", status: http.StatusUnauthorized},
		{label: "GET /v2/token, HTTP Basic password (bcrypt), scope pull", status: http.StatusOK},
		{label: "HEAD manifest by tag", status: http.StatusOK},
		{label: "GET manifest by digest", status: http.StatusOK},
		{label: "GET config blob (307 to presigned S3 URL, followed)", status: http.StatusTemporaryRedirect},
		{label: fmt.Sprintf("GET layer blob ×%d (307 to presigned S3 URL, followed)", fdLayers), status: http.StatusTemporaryRedirect},
	}
	// send makes one request as docker would and checks its status; a
	// blob GET follows the redirect and checks the bytes.
	send := func(method, path string, want int, accept bool, size int64, d digest.Digest) (http.Header, error) {
		req, _ := http.NewRequestWithContext(ctx, method, srv.URL+path, nil)
		if accept {
			req.Header.Set("Accept", ocispec.MediaTypeImageManifest)
			req.Header.Add("Accept", "application/vnd.docker.distribution.manifest.v2+json")
		}
		cl := noFollow
		if size >= 0 {
			cl = follow
		}
		resp, err := cl.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil {
			return nil, err
		}
		if size >= 0 {
			if resp.StatusCode != http.StatusOK || n != size || len(resp.Request.URL.Query().Get("X-Amz-Signature")) == 0 {
				return nil, fmt.Errorf("%s %s: status %d, %d bytes from %s, want 200, %d bytes from a presigned URL", method, path, resp.StatusCode, n, resp.Request.URL.Host, size)
			}
			return resp.Header, nil
		}
		if resp.StatusCode != want {
			return nil, fmt.Errorf("%s %s: status %d, want %d", method, path, resp.StatusCode, want)
		}
		return resp.Header, nil
	}
	// record closes a step: what the handler, the AWS clients and the
	// client saw since the last one.
	record := func(st *fdStep) {
		ds := th.take()
		st.dur = append(st.dur, ds...)
		st.reqs += len(ds)
		for _, d := range ds {
			b := billedMs(d)
			st.billed += b
			st.floored += max(b, durationFloor)
		}
		st.aws = st.aws.add(classify(counter.Snapshot()))
		st.meter = st.meter.add(meter.take())
		if st.items == nil {
			st.items = map[string]int{}
		}
		for k, n := range items.snapshot() {
			st.items[k] += n
		}
		st.s3gets += hc.take()["S3 GET"]
		counter.Reset()
		items.reset()
	}
	reset := func() {
		th.take()
		meter.take()
		hc.take()
		counter.Reset()
		items.reset()
	}
	pull := func(st []*fdStep) error {
		bt.tok.Store(nil)
		_, err := send(http.MethodGet, "/v2/", http.StatusUnauthorized, false, -1, "")
		if err != nil {
			return err
		}
		record(st[0])
		tok, code, _, err := tokenReq(ctx, noFollow, srv.URL, authUser, authPassword, scope)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("token: status %d", code)
		}
		if err != nil {
			return err
		}
		bt.tok.Store(&tok)
		record(st[1])
		h, err := send(http.MethodHead, "/v2/"+fdImage+"/manifests/v1", http.StatusOK, true, -1, "")
		if err != nil {
			return err
		}
		if got := h.Get("Docker-Content-Digest"); got != md.String() {
			return fmt.Errorf("HEAD manifest: Docker-Content-Digest %q, want %s", got, md)
		}
		record(st[2])
		if _, err := send(http.MethodGet, "/v2/"+fdImage+"/manifests/"+md.String(), http.StatusOK, true, -1, ""); err != nil {
			return err
		}
		record(st[3])
		cd := digest.FromBytes(im.config)
		if _, err := send(http.MethodGet, "/v2/"+fdImage+"/blobs/"+cd.String(), 0, false, int64(len(im.config)), cd); err != nil {
			return err
		}
		record(st[4])
		for _, l := range im.layers {
			if _, err := send(http.MethodGet, "/v2/"+fdImage+"/blobs/"+l.digest.String(), 0, false, l.size, l.digest); err != nil {
				return err
			}
		}
		record(st[5])
		return nil
	}
	// One warm-up pull (connections, the signing keys' first read, the
	// dummy bcrypt hash of a fresh instance), not counted.
	warm := make([]*fdStep, len(steps))
	for i := range warm {
		warm[i] = &fdStep{}
	}
	reset()
	if err := pull(warm); err != nil {
		t.Fatal(err)
	}
	reset()
	for range fdPulls {
		if err := pull(steps); err != nil {
			t.Fatal(err)
		}
	}

	// 7a: the pull, request by request (per pull: sums / fdPulls).
	sec := rep.section(fmt.Sprintf("7a. Front doors: a docker-style pull of a %d-layer image (%s), auth on (user %q, password login), Airlock in-process on dynalite + versitygw; per pull, mean of %d pulls after one warm-up",
		fdLayers, mib(im.total()), authUser, fdPulls),
		"request", "status", "requests", "handler mean", "DDB reads", "RRU", "DDB writes", "WRU", "S3 SDK calls", "S3 GETs (presigned)", "DynamoDB items", "")
	per := func(n int) string { return fmt.Sprintf("%.4g", float64(n)/fdPulls) }
	perf := func(x float64) string { return fmt.Sprintf("%.4g", x/fdPulls) }
	var tot fdStep
	tot.items = map[string]int{}
	for _, st := range steps {
		if st.reqs == 0 || st.reqs%fdPulls != 0 {
			t.Fatalf("%s: %d handler requests in %d pulls", st.label, st.reqs, fdPulls)
		}
		if st.meter.other > 0 {
			t.Errorf("%s: %d DynamoDB calls of an operation the meter does not price", st.label, st.meter.other)
		}
		itemsPer := map[string]int{}
		for k, n := range st.items {
			itemsPer[k] = n / fdPulls
		}
		sec.row(st.label, fmt.Sprint(st.status), per(st.reqs), ms2(mean(st.dur)), per(st.aws.ddbR), perf(st.meter.rru), per(st.aws.ddbW), perf(st.meter.wru),
			per(st.aws.s3), per(st.s3gets), itemDetail(itemsPer), "")
		tot.reqs += st.reqs
		tot.s3gets += st.s3gets
		tot.dur = append(tot.dur, st.dur...)
		tot.aws = tot.aws.add(st.aws)
		tot.meter = tot.meter.add(st.meter)
		tot.billed += st.billed
		tot.floored += st.floored
	}
	sec.row("whole pull", "-", per(tot.reqs), ms2(mean(tot.dur))+" mean/req", per(tot.aws.ddbR), perf(tot.meter.rru), per(tot.aws.ddbW), perf(tot.meter.wru),
		per(tot.aws.s3), per(tot.s3gets), "(sum)", "")
	sec.note("handler mean: ServeHTTP of the registry handler in this process (no network to the client), per request; %s per pull, %s billed (each request rounded up to 1 ms), %s with a 20 ms floor per request",
		ms(sumDur(tot.dur)/fdPulls), ms(tot.billed/fdPulls), ms(tot.floored/fdPulls))
	sec.note("Lambda's duration would differ: there the request also crosses the Runtime API and the event adapter, every DynamoDB call is a network round trip (dynalite here is local, ~ms), a 1024 MB arm64 function has ~0.6 vCPU for the bcrypt comparison, and cold starts add init time; tests/lambda (make test-lambda) logs the emulator's Duration of the same requests")
	sec.note("RRU/WRU: DynamoDB's consumed capacity as dynalite reports it (ReturnConsumedCapacity TOTAL set by the benchmark), each read at least 1 unit (½ eventually consistent) and each write at least 1, as DynamoDB bills; %d of %d reads eventually consistent; dynalite reported %s RRU and %s WRU per pull; calls per pull billed the minimum instead (an empty Query of the failed-login slots): %s",
		tot.meter.eventual/fdPulls, tot.meter.reads/fdPulls, perf(tot.meter.rruReported), perf(tot.meter.wruReported), per(tot.meter.raised))
	sec.note("S3 GETs (presigned): the client's GETs of the 307 Locations, straight to S3 (never through the front door); S3 SDK calls: the function's own S3 calls (awscount)")
	sec.note("the password login's DynamoDB writes are the failed-login slot taken and freed (part 6); an API-token login or a client reusing its token avoids them, anonymous pulls avoid the token's reads and the bcrypt time")

	// 7b: calls per pull and cost per million pulls, each front door.
	reqs := float64(tot.reqs) / fdPulls
	rru := tot.meter.rru / fdPulls
	wru := tot.meter.wru / fdPulls
	s3g := float64(tot.s3gets) / fdPulls
	gbs := tot.billed.Seconds() / fdPulls * lambdaGB
	gbsFloor := tot.floored.Seconds() / fdPulls * lambdaGB
	const M = 1e6
	usd := func(x float64) string { return fmt.Sprintf("$%.2f", x) }
	cost := rep.section(fmt.Sprintf("7b. Front doors: calls per pull and cost per million pulls (the pull of 7a, us-east-1 list prices, data transfer excluded; Lambda arm64 at %.0f MB)", lambdaGB*1024),
		"item", "unit price", "per pull HttpApi", "per pull FunctionUrl", "per M pulls HttpApi", "per M pulls FunctionUrl")
	cost.row("API Gateway HTTP API requests", "$1.00 / M", fmt.Sprintf("%.4g", reqs), "0", usd(reqs*M*priceAPIGW), "—")
	cost.row("Lambda requests", "$0.20 / M", fmt.Sprintf("%.4g", reqs), fmt.Sprintf("%.4g", reqs), usd(reqs*M*priceLambdaReq), usd(reqs*M*priceLambdaReq))
	cost.row(fmt.Sprintf("Lambda duration, measured (%s/req mean, in-process)", ms2(mean(tot.dur))), "$0.0000133334 / GB-s",
		fmt.Sprintf("%.4f GB-s", gbs), fmt.Sprintf("%.4f GB-s", gbs), usd(gbs*M*priceLambdaGBs), usd(gbs*M*priceLambdaGBs))
	cost.row("Lambda duration, 20 ms floor per request", "$0.0000133334 / GB-s",
		fmt.Sprintf("%.4f GB-s", gbsFloor), fmt.Sprintf("%.4f GB-s", gbsFloor), usd(gbsFloor*M*priceLambdaGBs), usd(gbsFloor*M*priceLambdaGBs))
	cost.row(fmt.Sprintf("DynamoDB reads (%s calls)", per(tot.aws.ddbR)), "$0.125 / M RRU", fmt.Sprintf("%.4g RRU", rru), fmt.Sprintf("%.4g RRU", rru), usd(rru*M*priceRRU), usd(rru*M*priceRRU))
	cost.row(fmt.Sprintf("DynamoDB writes (%s calls)", per(tot.aws.ddbW)), "$0.625 / M WRU", fmt.Sprintf("%.4g WRU", wru), fmt.Sprintf("%.4g WRU", wru), usd(wru*M*priceWRU), usd(wru*M*priceWRU))
	cost.row("S3 GET (presigned blob downloads)", "$0.0004 / 1000", fmt.Sprintf("%.4g", s3g), fmt.Sprintf("%.4g", s3g), usd(s3g*M*priceS3GET), usd(s3g*M*priceS3GET))
	cost.row("S3 calls by the function (SDK)", "-", per(tot.aws.s3), per(tot.aws.s3), "-", "-")
	common := reqs*M*priceLambdaReq + rru*M*priceRRU + wru*M*priceWRU + s3g*M*priceS3GET
	apigw := reqs * M * priceAPIGW
	for _, r := range []struct {
		label string
		gbs   float64
	}{{"with the measured duration", gbs}, {"with the 20 ms floor", gbsFloor}} {
		furl := common + r.gbs*M*priceLambdaGBs
		cost.row("total, "+r.label, "", "", "", usd(furl+apigw), fmt.Sprintf("%s (%s %%)", usd(furl), minus(100*(furl-(furl+apigw))/(furl+apigw))))
	}
	cost.note("calls per pull are the same behind either front door except API Gateway's requests: the function sees the same payload 2.0 events and makes the same DynamoDB and S3 calls; the presigned blob GETs go to S3 directly")
	cost.note("Lambda duration: Σ per request of the handler's time rounded up to 1 ms × %.0f GB (measured row), or of max(that, 20 ms) (floor row, infra/README.md's 20 ms per request as a floor; the token request's bcrypt is above it); the measured row is in-process on local emulators: expect Lambda to bill more (see 7a)", lambdaGB)
	cost.note("DynamoDB writes are priced at the on-demand list price of $0.625 per million WRU (not in infra/README.md's table): a password login's failed-login slot")
	cost.note("prices: API Gateway HTTP API first 300 M requests a month; S3 Standard GET; free tiers, CloudWatch Logs, KMS and data transfer (S3 to the internet) excluded; no assertions: figures only")
	for _, k := range slices.Sorted(maps.Keys(tot.aws.ops)) {
		if svc, _, _ := strings.Cut(k, "."); svc != "DynamoDB" && svc != "S3" {
			t.Errorf("unexpected AWS call %s during the pull", k)
		}
	}
}

// ms2 formats a duration in milliseconds with two decimals.
func ms2(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// minus formats a percentage with a true minus sign, as infra/README.md.
func minus(p float64) string { return strings.Replace(fmt.Sprintf("%.0f", p), "-", "−", 1) }

// sumDur adds durations.
func sumDur(ds []time.Duration) time.Duration {
	var s time.Duration
	for _, d := range ds {
		s += d
	}
	return s
}
