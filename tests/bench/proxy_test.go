//go:build bench

package bench

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/airlock-registry/airlock/shared/awscount"
)

// Proxy benchmark settings.
const (
	proxyRounds = 3  // cold pulls: rounds with fresh images, registries alternating
	proxyWarm   = 4  // warm pulls after each cold pull (the best time counts)
	proxyConc   = 20 // concurrent cold pulls of one fresh image
)

// proxySizes are the layer sizes of the proxy benchmark; AIRLOCK_BENCH_QUICK
// shrinks them (development runs).
type proxySizes struct {
	layer, conc int64   // the 3-layer pull image, the concurrent-pull image
	rss         []int64 // the one-layer images filled for peak RSS
}

func proxySizesFromEnv() proxySizes {
	if os.Getenv("AIRLOCK_BENCH_QUICK") != "" {
		return proxySizes{layer: 6 << 20, conc: 6 << 20, rss: []int64{6 << 20, 24 << 20}}
	}
	return proxySizes{layer: 50 << 20, conc: 20 << 20, rss: []int64{50 << 20, 200 << 20}}
}

// pullRun is one measured pull.
type pullRun struct {
	d   time.Duration
	up  upCounts
	bad string // answers ≥ 400 the client got (retried by go-containerregistry)
}

// benchProxy measures part 5: proxy repositories (pull-through caches) of
// CNCF distribution and Airlock on the same counting upstream.
func benchProxy(t *testing.T, rep *report, root, distBin, data, dynamoURL, s3URL string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	sz := proxySizesFromEnv()
	dir := filepath.Join(data, "proxy")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ldBin := buildLocaldev(t, root, dir)

	// The upstream and one counting front per consumer.
	up := startUpstream(t)
	fD := newFront(t, "distribution", up.URL)
	fA := newFront(t, "airlock hub", up.URL)
	fS := newFront(t, "airlock hub1s", up.URL)
	fC := newFront(t, "airlock in-process", up.URL)

	// Images, pushed straight into the upstream (not through a front).
	setup := time.Now()
	ims := make([]testImage, proxyRounds)
	for r := range ims {
		ims[r] = newImage(7000+uint64(r)*10, 3, sz.layer)
	}
	imQ := newImage(7500, 3, sz.conc)
	imR := make([]testImage, len(sz.rss))
	for i, n := range sz.rss {
		imR[i] = newImage(7600+uint64(i)*10, 1, n)
	}
	pushUp := func(name string, im testImage) {
		g, err := ggcrImage(im)
		if err != nil {
			t.Fatal(err)
		}
		if err := ggcrPush(ctx, up.URL, name, "v1", g); err != nil {
			t.Fatalf("push %s into the upstream: %v", name, err)
		}
	}
	for r, im := range ims {
		pushUp(fmt.Sprintf("bench/proxy%d", r), im)
	}
	pushUp("bench/conc", imQ)
	for i, im := range imR {
		pushUp(fmt.Sprintf("bench/rss%d", i), im)
	}
	t.Logf("upstream: images generated and pushed in %s", time.Since(setup).Round(time.Millisecond))

	dist := startDistributionProxy(t, distBin, filepath.Join(dir, "distribution"), fD.URL())
	air := startLocaldev(t, ldBin, filepath.Join(dir, "localdev"), fmt.Sprintf(proxyYAML, fA.URL(), fS.URL()))

	sc := newStatusCounter(remote.DefaultTransport)
	pull := func(what, base, name string, f *front, want int64) pullRun {
		t.Helper()
		f.reset()
		sc.take()
		start := time.Now()
		n, err := ggcrPull(ctx, base, name, "v1", remote.WithTransport(sc))
		d := time.Since(start)
		if err == nil && n != want {
			err = fmt.Errorf("pulled %d layer bytes, want %d", n, want)
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		r := pullRun{d: d, up: f.take(), bad: sc.take()}
		t.Logf("%s: %s; upstream: %d manifest HEAD, %d manifest GET, %d blob HEAD, %d blob GET, other %s; client saw errors: %s",
			what, secs(d), r.up.mHead, r.up.mGet, r.up.bHead, r.up.bGet, r.up.otherDetail(), r.bad)
		return r
	}

	// 5a/5b. Cold and warm pulls through each proxy.
	type who struct {
		label, base, prefix string
		f                   *front
	}
	regs := []who{
		{"distribution", dist.url, "", fD},
		{"Airlock", air.url, "hub/", fA},
	}
	cold, warm := map[string]time.Duration{}, map[string]time.Duration{}
	coldUp, warmUp := map[string]upCounts{}, map[string]upCounts{}
	warmMax := map[string]int{} // most upstream requests of any warm pull
	var bad, differ []string
	// key is a pull's upstream requests in one string, to compare pulls.
	key := func(c upCounts) string {
		return fmt.Sprintf("manifest HEAD %d, GET %d, blob HEAD %d, GET %d, other %s", c.mHead, c.mGet, c.bHead, c.bGet, c.otherDetail())
	}
	for r, im := range ims {
		order := regs
		if r%2 == 1 {
			order = []who{regs[1], regs[0]}
		}
		for _, g := range order {
			name := g.prefix + fmt.Sprintf("bench/proxy%d", r)
			c := pull(fmt.Sprintf("%s cold pull %d", g.label, r), g.base, name, g.f, im.total())
			cold[g.label] = minNonZero(cold[g.label], c.d)
			if r == 0 {
				coldUp[g.label] = c.up
			} else if key(c.up) != key(coldUp[g.label]) {
				differ = append(differ, fmt.Sprintf("%s cold pull %d: %s", g.label, r, key(c.up)))
			}
			if c.bad != "none" {
				bad = append(bad, fmt.Sprintf("%s cold pull %d: %s", g.label, r, c.bad))
			}
			for i := range proxyWarm {
				w := pull(fmt.Sprintf("%s warm pull %d.%d", g.label, r, i+1), g.base, name, g.f, im.total())
				warm[g.label] = minNonZero(warm[g.label], w.d)
				if r == 0 && i == 0 {
					warmUp[g.label] = w.up
				} else if key(w.up) != key(warmUp[g.label]) {
					differ = append(differ, fmt.Sprintf("%s warm pull %d.%d: %s", g.label, r, i+1, key(w.up)))
				}
				warmMax[g.label] = max(warmMax[g.label], w.up.total())
				if w.bad != "none" {
					bad = append(bad, fmt.Sprintf("%s warm pull %d.%d: %s", g.label, r, i+1, w.bad))
				}
			}
		}
	}
	// The pull after metadataMaxAge: proxy hub1s (1s) of the same upstream,
	// in the same localdev. Its first pull finds the blobs in the bucket
	// already (filled through hub): it links them after a blob HEAD each.
	s1 := pull("Airlock hub1s first pull", air.url, "hub1s/bench/proxy0", fS, ims[0].total())
	time.Sleep(1200 * time.Millisecond)
	s2 := pull("Airlock hub1s pull after metadataMaxAge", air.url, "hub1s/bench/proxy0", fS, ims[0].total())

	im0 := ims[0]
	blobs := len(im0.layers) + 1
	sec5a := rep.section(fmt.Sprintf("5a. Proxy repositories (pull-through cache) of one upstream: CNCF distribution v3.1.2 (proxy.remoteurl, filesystem storage) vs Airlock (localdev, proxy \"hub\": metadataMaxAge 6h, fill budget 60s, onTimeout retry; dynalite + versitygw); client: go-containerregistry v0.22.1 remote, in-process"),
		"image", "pull", "distribution", "Airlock", "time Airlock/distribution", "target", "")
	imLabel := fmt.Sprintf("%d × %s", len(im0.layers), mib(sz.layer))
	sec5a.row(imLabel, "cold (first pull: the cache fills from upstream)",
		secs(cold["distribution"])+" "+rate(im0.total(), cold["distribution"]), secs(cold["Airlock"])+" "+rate(im0.total(), cold["Airlock"]),
		ratio(cold["Airlock"].Seconds(), cold["distribution"].Seconds()), "≤ 2.0×", verdict(cold["Airlock"].Seconds() <= 2*cold["distribution"].Seconds()))
	sec5a.row(imLabel, "warm (served from the cache)",
		secs(warm["distribution"])+" "+rate(im0.total(), warm["distribution"]), secs(warm["Airlock"])+" "+rate(im0.total(), warm["Airlock"]),
		ratio(warm["Airlock"].Seconds(), warm["distribution"].Seconds()), "≤ 1.0×", verdict(warm["Airlock"] <= warm["distribution"]))
	sec5a.row(imLabel, "after metadataMaxAge (Airlock: proxy hub1s, 1s; distribution checks the tag on every pull: its warm pull)",
		secs(warm["distribution"]), secs(s2.d), ratio(s2.d.Seconds(), warm["distribution"].Seconds()), "", "")
	sec5a.note("cold: best of %d rounds, each with a fresh image and the registries alternating (one first, then the other); warm: best of %d pulls after each cold pull", proxyRounds, proxyWarm)
	sec5a.note("pull: manifest by tag, config, %d layers in parallel, every layer read fully with its digest verified; Airlock answers each blob GET with a 307 to a presigned versitygw URL once the blob is in its bucket, distribution serves the bytes itself (on a cold pull while storing them)", len(im0.layers))
	sec5a.note("Airlock's cold pull is the fill (upstream → S3 multipart upload, within the blob GET) followed by the download through the 307: cold − warm ≈ %s of fill for %s, %s",
		secs(cold["Airlock"]-warm["Airlock"]), mib(im0.total()), rate(im0.total(), cold["Airlock"]-warm["Airlock"]))
	sec5a.note("upstream: go-containerregistry pkg/registry (in memory, in the test process) behind a counting reverse proxy, one per proxy under test")
	if len(bad) > 0 {
		sec5a.note("answers ≥ 400 the client got and retried: %s", strings.Join(bad, "; "))
	} else {
		sec5a.note("no answer ≥ 400 reached the client in these pulls")
	}

	sec5b := rep.section("5b. Upstream requests per pull (counted by the reverse proxy in front of the upstream)",
		"registry", "pull", "manifest HEAD", "manifest GET", "blob HEAD", "blob GET", "other", "bytes from upstream", "expected", "")
	upRow := func(reg, what string, c upCounts, expect string, ok *bool) {
		v := ""
		if ok != nil {
			v = verdict(*ok)
		}
		sec5b.row(reg, what, fmt.Sprint(c.mHead), fmt.Sprint(c.mGet), fmt.Sprint(c.bHead), fmt.Sprint(c.bGet), c.otherDetail(), mibf(c.bytes), expect, v)
	}
	ptr := func(b bool) *bool { return &b }
	upRow("distribution", "cold", coldUp["distribution"], "", nil)
	upRow("distribution", "warm (2nd pull)", warmUp["distribution"], "", nil)
	ac, aw := coldUp["Airlock"], warmUp["Airlock"]
	upRow("Airlock hub", "cold", ac, fmt.Sprintf("1 GET per blob (%d)", blobs), ptr(ac.bGet == blobs && maxGets(ac) == 1))
	upRow("Airlock hub", "warm (2nd pull, within metadataMaxAge)", aw, "0 requests", ptr(aw.total() == 0))
	upRow("Airlock hub1s", "first pull (blobs already in the bucket, filled through hub)", s1.up, "0 blob GETs", ptr(s1.up.bGet == 0))
	upRow("Airlock hub1s", "after metadataMaxAge (1.2 s after the first)", s2.up, "≤ 1 manifest HEAD, 0 blob GETs", ptr(s2.up.mHead <= 1 && s2.up.bGet == 0 && s2.up.mGet == 0))
	sec5b.note("image: %s layers + config = %d blobs, one tag; cold and warm: round 0, its first warm pull; most upstream requests of any warm pull: distribution %d, Airlock %d",
		imLabel, blobs, warmMax["distribution"], warmMax["Airlock"])
	if len(differ) == 0 {
		sec5b.note("every other round's cold pull and every warm pull sent the upstream the same requests as these")
	} else {
		sec5b.note("pulls whose upstream requests differ from these: %s", strings.Join(differ, "; "))
	}
	sec5b.note("other: requests that are neither manifests nor blobs (/v2/ is the ping of the proxies' registry clients)")

	// 5c. AWS calls per pull: Airlock in-process with counted clients.
	var counter awscount.Counter
	rg, err := newProxyAirlock(ctx, dynamoURL, s3URL, fC.URL(), &counter)
	if err != nil {
		t.Fatal(err)
	}
	inproc := httptest.NewServer(rg)
	defer inproc.Close()
	sec5c := rep.section("5c. AWS calls per pull through Airlock (in-process, same configuration, clients counted with shared/awscount) next to a hosted pull",
		"pull", "DDB reads", "DDB writes", "S3 calls", "DynamoDB detail", "S3 detail", "upstream requests", "")
	awsPull := func(what, name string) (calls, pullRun) {
		counter.Reset()
		r := pull("in-process "+what, inproc.URL, name, fC, im0.total())
		return classify(counter.Snapshot()), r
	}
	awsRow := func(what string, c calls, r pullRun) {
		u := r.up
		sec5c.row(what, fmt.Sprint(c.ddbR), fmt.Sprint(c.ddbW), fmt.Sprint(c.s3), c.detail("DynamoDB"), c.detail("S3"),
			fmt.Sprintf("%d (mHEAD %d, mGET %d, bHEAD %d, bGET %d, other %d)", u.total(), u.mHead, u.mGet, u.bHead, u.bGet, u.other), "")
	}
	c, r := awsPull("proxy hub cold pull", "hub/bench/proxy0")
	awsRow("proxy hub: cold pull (fills "+fmt.Sprint(blobs)+" blobs)", c, r)
	c, r = awsPull("proxy hub warm pull", "hub/bench/proxy0")
	awsRow("proxy hub: warm pull", c, r)
	warmAWS := c
	c, r = awsPull("proxy hub1s first pull", "hub1s/bench/proxy0")
	awsRow("proxy hub1s: first pull (blobs in the bucket: link)", c, r)
	time.Sleep(1200 * time.Millisecond)
	c, r = awsPull("proxy hub1s pull after metadataMaxAge", "hub1s/bench/proxy0")
	awsRow("proxy hub1s: pull after metadataMaxAge", c, r)
	g0, err := ggcrImage(im0)
	if err != nil {
		t.Fatal(err)
	}
	if err := ggcrPush(ctx, inproc.URL, "local/bench/hosted", "v1", g0); err != nil {
		t.Fatal(err)
	}
	c, r = awsPull("hosted pull", "local/bench/hosted")
	awsRow("hosted local: pull of the same image", c, r)
	hostedAWS := c
	sec5c.note("warm proxy pull: %d DynamoDB reads, %d writes, %d S3 calls; hosted pull: %d reads, %d writes, %d S3 calls (same image, same client)",
		warmAWS.ddbR, warmAWS.ddbW, warmAWS.s3, hostedAWS.ddbR, hostedAWS.ddbW, hostedAWS.s3)
	sec5c.note("presigned S3 GETs are the client's, not AWS SDK calls; go-containerregistry GETs the manifest by tag, then config and layers")

	// 5d. Concurrent cold pulls of one fresh image.
	sec5d := rep.section(fmt.Sprintf("5d. %d concurrent cold pulls of one fresh image (%d × %s) through each proxy", proxyConc, len(imQ.layers), mib(sz.conc)),
		"registry", "wall time", "upstream GETs per layer", "config GETs", "manifest HEAD / GET", "blob HEAD", "bytes from upstream", "pulls failed", "answers ≥ 400 (retried)", "target", "")
	for _, g := range regs {
		d, u, nbad, failed := concurrentPulls(ctx, g.base, g.prefix+"bench/conc", g.f, imQ.total())
		lo, hi := 1<<30, 0
		for _, l := range imQ.layers {
			n := u.blobGets[l.digest.String()]
			lo, hi = min(lo, n), max(hi, n)
		}
		per := fmt.Sprint(lo)
		if hi != lo {
			per = fmt.Sprintf("%d-%d", lo, hi)
		}
		cfgGets := u.bGet // the blobs that are not layers: the config
		for _, l := range imQ.layers {
			cfgGets -= u.blobGets[l.digest.String()]
		}
		target, ok := "", ""
		if g.label == "Airlock" {
			target, ok = "1 GET per blob", verdict(lo == 1 && hi == 1 && cfgGets == 1)
		}
		sec5d.row(g.label, secs(d), per, fmt.Sprint(cfgGets), fmt.Sprintf("%d / %d", u.mHead, u.mGet), fmt.Sprint(u.bHead), mibf(u.bytes), failed, nbad, target, ok)
		t.Logf("%s: %d concurrent cold pulls in %s; upstream blob GETs %v", g.label, proxyConc, secs(d), u.blobGets)
	}
	sec5d.note("all %d pulls start together (go-containerregistry, %d layers each in parallel); each registry pulls the same image through its own front", proxyConc, len(imQ.layers))

	// 5e. Peak RSS during a fill: a fresh process per fill.
	dist.stop()
	air.stop()
	sec5e := rep.section("5e. Peak RSS of the proxy process during a cold pull (fill) of a one-layer image (fresh process per fill; VmHWM from /proc/<pid>/status)",
		"server", "layer", "RSS at start", "peak RSS (VmHWM)", "peak - start", "cold pull time", "")
	peaks := map[string][]int64{}
	for _, g := range []string{"Airlock", "distribution"} {
		for i, im := range imR {
			name := fmt.Sprintf("bench/rss%d", i)
			var pid int
			var base string
			var stop func()
			f := fA
			sub := filepath.Join(dir, fmt.Sprintf("rss-%s-%d", strings.ToLower(g), i))
			if g == "Airlock" {
				p := startLocaldev(t, ldBin, sub, fmt.Sprintf(proxyYAML, fA.URL(), fS.URL()))
				pid, base, stop, name = p.pid(), p.url, p.stop, "hub/"+name
			} else {
				p := startDistributionProxy(t, distBin, sub, fD.URL())
				pid, base, stop, f = p.pid(), p.url, p.stop, fD
			}
			m0, _ := readMemory(pid)
			r := pull(fmt.Sprintf("%s fill of %s", g, mib(im.total())), base, name, f, im.total())
			m1, err := readMemory(pid)
			if err != nil {
				t.Logf("read memory of %s: %v", g, err)
			}
			stop()
			peaks[g] = append(peaks[g], m1.hwm)
			sec5e.row(g, mib(im.total()), mibf(m0.rss), mibf(m1.hwm), mibf(m1.hwm-m0.rss), secs(r.d)+" "+rate(im.total(), r.d), "")
		}
	}
	if p := peaks["Airlock"]; len(p) == 2 {
		grow := p[1] - p[0]
		sec5e.note("Airlock: peak RSS %s with a %s layer, %s with a %s layer (%+.1f MiB for %s more layer): target bounded, independent of the layer size: %s",
			mibf(p[0]), mib(sz.rss[0]), mibf(p[1]), mib(sz.rss[1]), float64(grow)/(1<<20), mib(sz.rss[1]-sz.rss[0]), verdict(grow < 32<<20))
	}
	sec5e.note("a fill streams the upstream body into S3 parts of %s (3 part buffers per stream, as a streamed push); localdev's emulators are processes of their own, not counted", mib(8<<20))
}

// concurrentPulls runs proxyConc pulls of name at once and returns the wall
// time, the upstream requests, the client's failed answers and how many
// pulls failed (with the first error).
func concurrentPulls(ctx context.Context, base, name string, f *front, want int64) (time.Duration, upCounts, string, string) {
	f.reset()
	sc := newStatusCounter(remote.DefaultTransport)
	start := make(chan struct{})
	errs := make([]error, proxyConc)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() {
			<-start
			n, err := ggcrPull(ctx, base, name, "v1", remote.WithTransport(sc))
			if err == nil && n != want {
				err = fmt.Errorf("pulled %d layer bytes, want %d", n, want)
			}
			errs[i] = err
		})
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	d := time.Since(t0)
	failed, first := 0, error(nil)
	for _, err := range errs {
		if err != nil {
			failed++
			if first == nil {
				first = err
			}
		}
	}
	fs := "0"
	if failed > 0 {
		fs = fmt.Sprintf("%d: %v", failed, first)
	}
	return d, f.take(), sc.take(), fs
}

// maxGets is the most GETs of any one blob.
func maxGets(c upCounts) int {
	m := 0
	for _, n := range c.blobGets {
		m = max(m, n)
	}
	return m
}
