//go:build bench

package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/airlock-registry/airlock/localdev/harness"
)

// lambdaBody is the largest request body through API Gateway + Lambda.
const lambdaBody = 4706379

// cliRuns is how many times the CLI push and the limit run, back to back
// (fresh blobs each time; the best of each is compared).
const cliRuns = 3

// cliRun is one run of the CLI (or regctl) as a process of its own.
type cliRun struct {
	d      time.Duration
	maxRSS int64 // bytes (VmHWM)
	out    string
}

// runTool runs argv with env and returns its time and peak RSS: the
// process's VmHWM, polled every 10 ms while it runs (monotonic, so the last
// read is the peak up to then; getrusage's maxrss of a child started by Go
// reports the parent's RSS at the fork instead).
func runTool(t *testing.T, env []string, argv ...string) cliRun {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var hwm int64
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for {
			if m, err := readMemory(cmd.Process.Pid); err == nil {
				hwm = max(hwm, m.hwm)
			}
			select {
			case <-done:
				return
			case <-tk.C:
			}
		}
	}()
	err := cmd.Wait()
	d := time.Since(start)
	close(done)
	<-polled
	if err != nil {
		t.Fatalf("%v: %v\n%s", argv, err, out.String())
	}
	return cliRun{d: d, maxRSS: hwm, out: out.String()}
}

// writeBenchLayout writes im as an OCI layout tagged v1 under dir.
func writeBenchLayout(t *testing.T, dir string, im testImage) {
	t.Helper()
	img, err := ggcrImage(im)
	if err != nil {
		t.Fatal(err)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v1"})); err != nil {
		t.Fatal(err)
	}
}

// benchCLI measures part 8 (doc.go).
func benchCLI(t *testing.T, rep *report, root, data, dynamoURL, s3URL string) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	_, s3c, err := awsClients(ctx, dynamoURL, s3URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"limit", "airlockcli"} {
		if err := harness.CreateBucket(ctx, s3c, b); err != nil {
			t.Fatal(err)
		}
	}
	cli := filepath.Join(data, "airlock-cli")
	build := exec.Command("go", "build", "-o", cli, "./shared/cmd/airlock")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./shared/cmd/airlock: %v\n%s", err, out)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	air := startProc(t, "airlock", "", filepath.Join(data, "airlock-cli.log"), []string{
		serveEnv + "=1", "AIRLOCK_BENCH_MAX_BODY=" + strconv.Itoa(lambdaBody),
		"AIRLOCK_BENCH_DYNAMO=" + dynamoURL, "AIRLOCK_BENCH_TABLE=benchcli",
		"AIRLOCK_BENCH_S3=" + s3URL, "AIRLOCK_BENCH_BUCKET=airlockcli",
	}, self)
	host := air.url[len("http://"):]
	env := []string{"DOCKER_CONFIG=" + t.TempDir(), "XDG_CACHE_HOME=" + t.TempDir()}
	const size = 200 << 20
	total := int64(3 * size)

	sec := rep.section("airlock CLI: 3 × 200 MiB, front door limit 4,706,379 bytes (part 8)",
		"push", "time", "throughput", "vs the limit", "CLI peak RSS", "bound jobs×parts×part")
	seed := uint64(8000)
	layoutOf := func() (string, testImage) {
		seed += 10
		im := newImage(seed, 3, size)
		dir := filepath.Join(data, fmt.Sprintf("cli-layout-%d", seed))
		writeBenchLayout(t, dir, im)
		return dir, im
	}
	var best, limitBest time.Duration
	var cliRSS int64
	var pairs []string
	for r := range cliRuns {
		dir, im := layoutOf()
		lim := time.Now()
		if err := limitPut(ctx, s3c, "limit", im.layers); err != nil {
			t.Fatal(err)
		}
		ld := time.Since(lim)
		run := runTool(t, env, cli, "push", "--quiet", "oci:"+dir+":v1", fmt.Sprintf("%s/local/cli/run%d:v1", host, r))
		t.Logf("run %d: CLI %s (peak RSS %s), limit %s", r, secs(run.d), mibf(run.maxRSS), secs(ld))
		if best == 0 || run.d < best {
			best = run.d
		}
		if limitBest == 0 || ld < limitBest {
			limitBest = ld
		}
		cliRSS = max(cliRSS, run.maxRSS)
		pairs = append(pairs, fmt.Sprintf("%s / %s = %s", secs(run.d), secs(ld), ratio(run.d.Seconds(), ld.Seconds())))
		_ = os.RemoveAll(dir)
	}
	sec.row("S3 limit: SDK multipart uploader, hashing (best of runs)", secs(limitBest), rate(total, limitBest), "1.00×", "", "")
	sec.row("airlock push (direct parts; --jobs 4 --parts 4, 16 MiB parts)", secs(best), rate(total, best),
		ratio(best.Seconds(), limitBest.Seconds()), mibf(cliRSS), mibf(3*4*16<<20))
	sec.note("run by run (CLI / limit, measured back to back): %s", strings.Join(pairs, "; "))
	if r := best.Seconds() / limitBest.Seconds(); r > 1.2 {
		sec.note("the CLI took %.2f× the limit, over the 1.2× target (times on a shared machine: see the load average)", r)
	}

	// The bound: one blob at a time, two parts in flight.
	dir, _ := layoutOf()
	small := runTool(t, env, cli, "push", "--quiet", "--jobs", "1", "--parts", "2", "oci:"+dir+":v1", host+"/local/cli/small:v1")
	sec.row("airlock push --jobs 1 --parts 2", secs(small.d), rate(total, small.d), ratio(small.d.Seconds(), limitBest.Seconds()), mibf(small.maxRSS), mibf(1*2*16<<20))

	// regctl's chunked push through the same limit.
	regctl := filepath.Join(root, "bin", "regctl")
	if _, err := os.Stat(regctl); err != nil {
		sec.note("regctl's chunked push not measured: %s is missing (make tools)", regctl)
	} else {
		renv := []string{"HOME=" + t.TempDir()}
		runTool(t, renv, regctl, "registry", "set", "--tls", "disabled", "--blob-chunk", "4194304", "--blob-max", "4194304", host)
		rr := runTool(t, renv, regctl, "image", "copy", "ocidir://"+dir+":v1", host+"/local/cli/regctl:v1")
		sec.row("regctl image copy, 4 MiB chunks through the registry", secs(rr.d), rate(total, rr.d), ratio(rr.d.Seconds(), limitBest.Seconds()), mibf(rr.maxRSS), "")
	}
	_ = os.RemoveAll(dir)

	// Verification: the completion request of a direct upload (complete the
	// multipart upload, read the object back, hash it, record the blob).
	im := newImage(seed+5, 3, size)
	var verify time.Duration
	for _, b := range im.layers {
		d, err := directUpload(ctx, air.url, "local/cli/verify", b)
		if err != nil {
			t.Fatal(err)
		}
		verify += d
	}
	perGiB := time.Duration(float64(verify) / (float64(total) / (1 << 30)))
	sec.row("verification (the completion requests of 3 direct uploads)", secs(verify), rate(total, verify), "", "", "")
	sec.note("verification: %s per GiB in the completing request (inline up to DirectOptions.VerifyInline, 200 MiB by default; larger blobs go to the verifier function, same work)", secs(perGiB))
	sec.note("the CLI's times include reading and hashing the layout and the registry's inline verification of each 200 MiB blob (the last one's, about %s, after its upload), all on the same CPUs as the emulator; the limit is the SDK's multipart uploader (5 MiB parts, 5 at a time) with SHA-256 of the stream", secs(verify/3))
	sec.note("peak RSS is the process's VmHWM (polled every 10 ms): the part buffers (bounded by jobs × parts × part size) plus the Go runtime")
}

// directUpload pushes b by direct upload (4 parts at a time, 16 MiB) and
// returns the duration of the completion request alone.
func directUpload(ctx context.Context, base, repo string, b blob) (time.Duration, error) {
	do := func(method, u string, body []byte) (*http.Response, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
		if err != nil {
			return nil, nil, err
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer res.Body.Close()
		rb, err := io.ReadAll(res.Body)
		return res, rb, err
	}
	res, _, err := do(http.MethodPost, base+"/v2/"+repo+"/blobs/uploads/", nil)
	if err != nil || res.StatusCode != http.StatusAccepted {
		return 0, fmt.Errorf("open upload: %v %v", res, err)
	}
	loc, err := url.Parse(res.Header.Get("Location"))
	if err != nil {
		return 0, err
	}
	locURL := (&url.URL{Scheme: "http", Host: base[len("http://"):]}).ResolveReference(loc)
	q := locURL.Query()
	q.Set("size", strconv.FormatInt(b.size, 10))
	q.Set("airlock-part-size", strconv.Itoa(16<<20))
	ask := *locURL
	ask.RawQuery = q.Encode()
	res, body, err := do(http.MethodPost, ask.String(), nil)
	if err != nil || res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("ask parts: %v %v %s", res, err, body)
	}
	var a struct {
		Parts []struct {
			Number int32  `json:"number"`
			URL    string `json:"url"`
			Size   int64  `json:"size"`
		} `json:"parts"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return 0, err
	}
	type etag struct {
		Number int32  `json:"number"`
		ETag   string `json:"etag"`
	}
	etags := make([]etag, len(a.Parts))
	errs := make([]error, len(a.Parts))
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	r := b.open()
	for i, p := range a.Parts {
		buf := make([]byte, p.Size)
		if _, err := io.ReadFull(r, buf); err != nil {
			return 0, err
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			res, body, err := do(http.MethodPut, p.URL, buf)
			if err == nil && res.StatusCode != http.StatusOK {
				err = fmt.Errorf("part %d: %s %s", p.Number, res.Status, body)
			}
			if err != nil {
				errs[i] = err
				return
			}
			etags[i] = etag{Number: p.Number, ETag: res.Header.Get("ETag")}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return 0, err
		}
	}
	cq := locURL.Query()
	cq.Set("digest", b.digest.String())
	cq.Set("airlock-complete", "1")
	complete := *locURL
	complete.RawQuery = cq.Encode()
	cb, _ := json.Marshal(map[string]any{"parts": etags})
	start := time.Now()
	res, body, err = do(http.MethodPut, complete.String(), cb)
	d := time.Since(start)
	if err != nil || res.StatusCode != http.StatusCreated {
		return 0, fmt.Errorf("complete: %v %v %s", res, err, body)
	}
	return d, nil
}
