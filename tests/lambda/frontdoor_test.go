package lambda_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock-registry/airlock/shared/upstream/upstreamtest"
)

// startBehind runs another function as template.yaml deploys it behind door:
// AIRLOCK_FRONT_DOOR set, the function timeout (the emulator's
// AWS_LAMBDA_FUNCTION_TIMEOUT: the deadline it gives each invoke) and debug
// logs, where functions/api logs each request's host and deadline.
func startBehind(t *testing.T, door frontDoor, timeout int) *function {
	t.Helper()
	fn, err := startFunction(context.Background(), suite.rie, suite.bootstrap, []string{
		"AIRLOCK_FRONT_DOOR=" + door.name,
		"AWS_LAMBDA_FUNCTION_TIMEOUT=" + strconv.Itoa(timeout),
		"LOG_LEVEL=debug",
	})
	if err != nil {
		t.Fatal(err)
	}
	fn.door = door
	t.Cleanup(fn.stop)
	return fn
}

// requestLog is functions/api's debug line of one request.
type requestLog struct {
	Msg               string    `json:"msg"`
	FrontDoor         string    `json:"frontDoor"`
	Method            string    `json:"method"`
	Host              string    `json:"host"`
	Path              string    `json:"path"`
	FillUntilDeadline bool      `json:"fillUntilDeadline"`
	Deadline          time.Time `json:"deadline"`
	RemainingMs       int64     `json:"remainingMs"`
}

// requestLogs returns the function's request lines so far.
func (fn *function) requestLogs() []requestLog {
	var out []requestLog
	sc := bufio.NewScanner(strings.NewReader(fn.out.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `"msg":"request"`) {
			continue
		}
		var l requestLog
		if json.Unmarshal([]byte(line[strings.Index(line, "{"):]), &l) == nil && l.Msg == "request" {
			out = append(out, l)
		}
	}
	return out
}

// durations returns the Duration (ms) of the emulator's REPORT lines, one
// per invoke so far (the emulator writes each after the response).
func (fn *function) durations(t *testing.T) []float64 {
	t.Helper()
	for end := time.Now().Add(2 * time.Second); ; {
		d := fn.reports()
		if int64(len(d)) >= fn.invokes.Load() {
			return d
		}
		if time.Now().After(end) {
			t.Fatalf("%d REPORT lines for %d invokes:\n%s", len(d), fn.invokes.Load(), tail(fn.out.String(), 2000))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (fn *function) reports() []float64 {
	var out []float64
	sc := bufio.NewScanner(strings.NewReader(fn.out.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if m := reportRe.FindStringSubmatch(sc.Text()); m != nil {
			d, _ := strconv.ParseFloat(m[2], 64)
			out = append(out, d)
		}
	}
	return out
}

// lastRequest waits briefly for the request line of the invoke just made.
func (fn *function) lastRequest(t *testing.T, n int) requestLog {
	t.Helper()
	for end := time.Now().Add(2 * time.Second); ; {
		if logs := fn.requestLogs(); len(logs) >= n {
			return logs[n-1]
		}
		if time.Now().After(end) {
			t.Fatalf("no debug request line #%d in the function's output:\n%s", n, tail(fn.out.String(), 2000))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wantChallenge: without a token the function answers 401 with a realm on
// the host the client addressed (r.Host is the event's domainName, through
// the adapter) over https (the front door's X-Forwarded-Proto).
func wantChallenge(t *testing.T, fn *function) {
	t.Helper()
	r := fn.invokeRaw(t, fn.door.event(t, request{method: "GET", target: "/v2/" + image + "/tags/list"}))
	want := fmt.Sprintf(`Bearer realm="https://%s/v2/token",service="%s",scope="repository:%s:pull"`, fn.door.host, fn.door.host, image)
	if r.StatusCode != http.StatusUnauthorized || r.header("Www-Authenticate") != want {
		t.Fatalf("%s, no token: %s, want 401 with %s", fn.door.name, r, want)
	}
	for k, v := range r.Headers {
		if strings.Contains(strings.ToLower(k+v), "deadline") || strings.Contains(strings.ToLower(k+v), "remaining") {
			t.Errorf("%s: the response carries debug information: %s: %s", fn.door.name, k, v)
		}
	}
}

// TestFrontDoorDeadline: behind each front door the handler sees the
// deadline the emulator gives the invoke (the function's timeout) and the
// host of the event; only behind a function URL may proxy fills use it all.
func TestFrontDoorDeadline(t *testing.T) {
	for _, tc := range []struct {
		door    frontDoor
		timeout int
		fill    bool
	}{
		{httpAPI, 29, false},     // template.yaml: Timeout 29 behind API Gateway
		{functionURL, 900, true}, // FunctionUrlTimeout's default and maximum
		{functionURL, 60, true},
	} {
		t.Run(fmt.Sprintf("%s-%ds", tc.door.name, tc.timeout), func(t *testing.T) {
			fn := startBehind(t, tc.door, tc.timeout)
			t0 := time.Now()
			wantChallenge(t, fn)
			l := fn.lastRequest(t, 1)
			max := int64(tc.timeout) * 1000
			if l.FrontDoor != tc.door.name || l.FillUntilDeadline != tc.fill || l.Host != tc.door.host || l.Path != "/v2/"+image+"/tags/list" {
				t.Fatalf("request line %+v: want front door %s, fillUntilDeadline %v, host %s", l, tc.door.name, tc.fill, tc.door.host)
			}
			if l.RemainingMs <= max-5000 || l.RemainingMs > max {
				t.Fatalf("the handler's deadline is %d ms away, want the emulator's %d s timeout (less the invoke's start)", l.RemainingMs, tc.timeout)
			}
			if d := l.Deadline.Sub(t0); d < time.Duration(tc.timeout-5)*time.Second || d > time.Duration(tc.timeout+1)*time.Second {
				t.Fatalf("deadline %v is %v after the invoke, want about %d s", l.Deadline, d, tc.timeout)
			}
			t.Logf("%s, AWS_LAMBDA_FUNCTION_TIMEOUT=%d: handler deadline %d ms away, host %s, fillUntilDeadline %v",
				tc.door.name, tc.timeout, l.RemainingMs, l.Host, l.FillUntilDeadline)
		})
	}
}

// TestFunctionURLPushPull pushes an image and pulls it back with every
// request a function URL event (FrontDoor FunctionUrl, timeout 900 s), and
// reports the emulator's Duration of each pull request (infra/README.md:
// costs).
func TestFunctionURLPushPull(t *testing.T) {
	fn := startBehind(t, functionURL, 900)
	const name = "lambda/furl"
	wantChallenge(t, fn)

	layer := randBytes(300 << 10)
	ld := digest.FromBytes(layer)
	loc, _ := fn.startUpload(t, name)
	loc = fn.patch(t, name, loc, 0, layer[:200<<10])
	loc = fn.patch(t, name, loc, 200<<10, layer[200<<10:])
	fn.finish(t, name, loc, ld)
	cfg := []byte(`{"architecture":"arm64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	fn.pushMonolithic(t, name, cfg)
	man := manifestOf(cfg, layer, nil)
	md := digest.FromBytes(man)
	put := fn.do(t, request{method: "PUT", target: "/v2/" + name + "/manifests/v1", body: man,
		header: []string{"Content-Type", ocispec.MediaTypeImageManifest}})
	wantStatus(t, "PUT manifest", put, http.StatusCreated)
	wantHeader(t, "PUT manifest", put, "Location", "/v2/"+name+"/manifests/"+md.String())

	// A pull as docker makes it: /v2/ (401), a token, the manifest by tag
	// (HEAD) and by digest (GET), then each blob. With 5 layers that is the
	// 10 requests per pull of infra/README.md's costs.
	before := len(fn.durations(t))
	ping := fn.invokeRaw(t, fn.door.event(t, request{method: "GET", target: "/v2/"}))
	wantStatus(t, "GET /v2/ without a token", ping, http.StatusUnauthorized)
	auth := []string{"Authorization", "Bearer " + adminToken(t, fn, fn.door.host, name)}
	head := fn.do(t, request{method: "HEAD", target: "/v2/" + name + "/manifests/v1",
		header: append([]string{"Accept", ocispec.MediaTypeImageManifest, "Accept", "application/vnd.docker.distribution.manifest.v2+json"}, auth...)})
	wantStatus(t, "HEAD manifest", head, http.StatusOK)
	wantHeader(t, "HEAD manifest", head, "Docker-Content-Digest", md.String())
	get := fn.do(t, request{method: "GET", target: "/v2/" + name + "/manifests/" + md.String(),
		header: append([]string{"Accept", ocispec.MediaTypeImageManifest}, auth...)})
	wantStatus(t, "GET manifest", get, http.StatusOK)
	if string(get.body()) != string(man) {
		t.Fatalf("GET manifest: body %q, want %q", get.body(), man)
	}
	for _, b := range [][]byte{cfg, layer} {
		d := digest.FromBytes(b)
		r := fn.do(t, request{method: "GET", target: "/v2/" + name + "/blobs/" + d.String(), header: auth})
		wantStatus(t, "GET blob "+d.String(), r, http.StatusTemporaryRedirect)
		if got := fetchPresigned(t, r.header("Location")); digest.FromBytes(got) != d {
			t.Fatalf("presigned GET of %s: %d bytes with digest %s", d, len(got), digest.FromBytes(got))
		}
	}
	pull := fn.durations(t)
	if len(pull) != before+6 {
		t.Fatalf("%d REPORT lines for the 6 pull requests", len(pull)-before)
	}
	pull = pull[before:]

	// Every request reached the handler with the function URL's host and
	// the 900 s deadline.
	for i, l := range fn.requestLogs() {
		if l.Host != functionURL.host || l.FrontDoor != "FunctionUrl" || !l.FillUntilDeadline || l.RemainingMs <= 890_000 || l.RemainingMs > 900_000 {
			t.Fatalf("request #%d: %+v", i+1, l)
		}
	}
	var sum float64
	for _, d := range pull {
		sum += d
	}
	t.Logf("pull through the function URL (GET /v2/ 401, token, HEAD manifest by tag, GET manifest by digest, 2 blob GETs): emulator Duration %v ms, mean %.2f ms (local dynalite and versitygw: AWS's DynamoDB adds network time)",
		pull, sum/float64(len(pull)))
}

// TestFrontDoorFillBudget: a proxy fill that outlasts its budget (1 s here,
// the upstream trickles the layer over 3 s) is cut at the budget behind the
// HTTP API (503 Retry-After: onTimeout retry, no proxyfetch configured) but
// finishes inside the request behind a function URL, which may use the
// request's whole deadline (repo.ProxyOptions.FillUntilDeadline).
func TestFrontDoorFillBudget(t *testing.T) {
	up := upstreamtest.New(t)
	for _, tc := range []struct {
		door frontDoor
		want int
	}{
		{httpAPI, http.StatusServiceUnavailable},
		{functionURL, http.StatusTemporaryRedirect},
	} {
		t.Run(tc.door.name, func(t *testing.T) {
			// Own upstream image and proxy name: nothing cached by the other case.
			img := up.PushImage(t, "app-"+strings.ToLower(tc.door.name), "v1", 1, 1<<20)
			proxy := "slow" + strings.ToLower(tc.door.name)
			cfg := fmt.Sprintf("default: local\nauth: {}\nrepositories:\n- {name: local, kind: hosted}\n"+
				"- name: %s\n  kind: proxy\n  remote: %s\n  fill: {budget: 1s, onTimeout: retry}\n", proxy, up.URL)
			fn, err := startFunction(context.Background(), suite.rie, suite.bootstrap, []string{
				"AIRLOCK_FRONT_DOOR=" + tc.door.name, "AWS_LAMBDA_FUNCTION_TIMEOUT=29", "AIRLOCK_CONFIG=" + cfg})
			if err != nil {
				t.Fatal(err)
			}
			fn.door = tc.door
			t.Cleanup(fn.stop)
			layer := img.Layers[0]
			up.SetFault(upstreamtest.FaultSlowBlobs(3 * time.Second))
			defer up.SetFault(upstreamtest.Fault{})
			t0 := time.Now()
			r := fn.do(t, request{method: "GET", target: "/v2/" + proxy + "/app-" + strings.ToLower(tc.door.name) + "/blobs/" + layer})
			took := time.Since(t0)
			if r.StatusCode != tc.want {
				t.Fatalf("cold blob GET behind %s: %s after %v, want %d\n%s", tc.door.name, r, took, tc.want, tail(fn.out.String(), 2000))
			}
			switch tc.want {
			case http.StatusServiceUnavailable:
				if r.header("Retry-After") == "" || took > 2500*time.Millisecond {
					t.Fatalf("behind the HTTP API: %s after %v, want 503 with Retry-After at the 1 s budget", r, took)
				}
			default:
				if took < 2*time.Second {
					t.Fatalf("behind the function URL the fill answered after %v: the slow upstream takes 3 s", took)
				}
				if got := fetchPresigned(t, r.header("Location")); digest.FromBytes(got).String() != layer {
					t.Fatalf("filled blob: %d bytes with digest %s, want %s", len(got), digest.FromBytes(got), layer)
				}
			}
			t.Logf("%s: cold 1 MiB layer from a 3 s upstream, fill budget 1 s: %d after %v", tc.door.name, r.StatusCode, took.Round(time.Millisecond))
		})
	}
}
