//go:build bench

package bench

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/airlock-registry/airlock/localdev/harness"
	"github.com/airlock-registry/airlock/shared/storage/s3store"
)

// chunkSmall is the chunk size of the chunked push compared with a streamed
// one (3 × 20 MiB in 256 KiB chunks).
const chunkSmall = 256 << 10

// pulls is how many times each pull runs (the best time is reported); bigRuns
// how many times the 3 × 200 MiB push and its limit run (fresh blobs each time).
const (
	pulls   = 5
	bigRuns = 2
	rounds  = 3
)

// servers are the two registries under test, each restartable so that every
// push is measured on a fresh process (peak RSS of that push alone).
type servers struct {
	t                               *testing.T
	distBin, data, dynamoURL, s3URL string
	dist, air                       *proc
}

func (s *servers) restart(who string) *proc {
	switch who {
	case "Airlock":
		s.air.stop()
		s.air = startAirlock(s.t, s.data, s.dynamoURL, "bench", s.s3URL, "airlock")
		return s.air
	default:
		s.dist.stop()
		s.dist = startDistribution(s.t, s.distBin, s.data, s.s3URL, "distribution")
		return s.dist
	}
}

func (s *servers) get(who string) *proc {
	if who == "Airlock" {
		return s.air
	}
	return s.dist
}

// peak is one push's memory on a fresh server process.
type peak struct {
	who, push string
	body      int64 // largest request body
	start     memory
	end       memory
}

// benchCompare measures parts 2-4: distribution vs Airlock, Airlock vs the
// S3 limit, chunked vs streamed pushes, and the servers' peak RSS.
func benchCompare(t *testing.T, rep *report, distBin, data, dynamoURL, s3URL string) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	_, s3c, err := awsClients(ctx, dynamoURL, s3URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"distribution", "limit"} {
		if err := harness.CreateBucket(ctx, s3c, b); err != nil {
			t.Fatal(err)
		}
	}
	sv := &servers{t: t, distBin: distBin, data: data, dynamoURL: dynamoURL, s3URL: s3URL}
	sv.dist = startDistribution(t, distBin, data, s3URL, "distribution")
	sv.air = startAirlock(t, data, dynamoURL, "bench", s3URL, "airlock")
	var peaks []peak

	// timed runs f and returns its duration, failing the test on error.
	timed := func(what string, f func() error) time.Duration {
		t.Helper()
		start := time.Now()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		d := time.Since(start)
		t.Logf("%s: %s", what, secs(d))
		return d
	}
	// push runs f against a freshly started server and records its peak RSS.
	push := func(who, what string, body int64, f func(url string) error) time.Duration {
		t.Helper()
		p := sv.restart(who)
		m0, _ := readMemory(p.pid())
		d := timed(who+" "+what, func() error { return f(p.url) })
		m1, err := readMemory(p.pid())
		if err != nil {
			t.Logf("read memory of %s: %v", who, err)
		}
		pk := peak{who: who, push: what, body: body, start: m0, end: m1}
		if i := slices.IndexFunc(peaks, func(o peak) bool { return o.who == who && o.push == what }); i >= 0 {
			if pk.end.hwm > peaks[i].end.hwm { // repeated runs: keep the highest peak
				peaks[i] = pk
			}
		} else {
			peaks = append(peaks, pk)
		}
		return d
	}
	// pull runs f pulls times and returns the best duration.
	pull := func(what string, f func() error) time.Duration {
		t.Helper()
		b := timed(what, f)
		for range pulls - 1 {
			b = min(b, timed(what, f))
		}
		return b
	}

	// 2. The same 60 MiB image through both registries, with go-containerregistry.
	sec2 := rep.section("2. Same image on the same versitygw: CNCF distribution v3.1.2 (s3 driver, redirect on) vs Airlock (own process); client: go-containerregistry v0.22.1 remote, in-process",
		"image", "op", "distribution", "Airlock", "throughput Airlock/distribution", "target", "")
	// Rounds alternate the registries, each with fresh blobs; the best time counts.
	const ggcrPushLabel = "ggcr push 3×20 MiB (HEAD, POST, 1 streamed PATCH, PUT per blob; 4 at a time)"
	var dPush, aPush time.Duration
	var imA testImage
	for r := range rounds {
		imA = newImage(3000+uint64(r)*10, 3, 20<<20)
		gA, err := ggcrImage(imA)
		if err != nil {
			t.Fatal(err)
		}
		tag := fmt.Sprintf("v%d", r)
		dPush = minNonZero(dPush, push("distribution", ggcrPushLabel, 20<<20, func(u string) error { return ggcrPush(ctx, u, "bench/a", tag, gA) }))
		aPush = minNonZero(aPush, push("Airlock", ggcrPushLabel, 20<<20, func(u string) error { return ggcrPush(ctx, u, "local/bench/a", tag, gA) }))
	}
	lastTag := fmt.Sprintf("v%d", rounds-1)
	checkPull := func(what string, want int64, f func() (int64, error)) func() error {
		return func() error {
			n, err := f()
			if err == nil && n != want {
				err = fmt.Errorf("%s: pulled %d layer bytes, want %d", what, n, want)
			}
			return err
		}
	}
	dPull := pull("distribution ggcr pull 3×20 MiB", checkPull("distribution", imA.total(), func() (int64, error) {
		return ggcrPull(ctx, sv.dist.url, "bench/a", lastTag)
	}))
	aPull := pull("Airlock ggcr pull 3×20 MiB", checkPull("Airlock", imA.total(), func() (int64, error) {
		return ggcrPull(ctx, sv.air.url, "local/bench/a", lastTag)
	}))
	sec2.row("3 × 20 MiB", "push", secs(dPush)+" "+rate(imA.total(), dPush), secs(aPush)+" "+rate(imA.total(), aPush),
		ratio(dPush.Seconds(), aPush.Seconds()), "≥ 1.0×", verdict(dPush >= aPush))
	sec2.row("3 × 20 MiB", "pull", secs(dPull)+" "+rate(imA.total(), dPull), secs(aPull)+" "+rate(imA.total(), aPull),
		ratio(dPull.Seconds(), aPull.Seconds()), "≥ 1.0×", verdict(dPull >= aPull))
	sec2.note("best of %d pulls; pushes: best of %d rounds alternating the registries, fresh blobs each round, each push on a freshly started server", pulls, rounds)
	sec2.note("pull: manifest, config, 3 layers in parallel following the 307 to versitygw, digests verified while reading")

	// 3. Airlock against the limit: the SDK straight to the same versitygw.
	sec3 := rep.section("3. Airlock vs the limit (same versitygw; limit = SDK s3/manager Uploader put (defaults: 5 MiB parts, 5 at a time) and GetObject get, SHA-256 while streaming, 3 blobs at a time)",
		"what", "bytes", "time", "throughput", "ratio", "target", "")
	var lPut, bPush time.Duration
	var imB testImage
	for i := range bigRuns {
		imB = newImage(4000+uint64(i)*10, 3, 200<<20)
		gB, err := ggcrImage(imB)
		if err != nil {
			t.Fatal(err)
		}
		d := timed("limit put 3×200 MiB", func() error { return limitPut(ctx, s3c, "limit", imB.layers) })
		lPut = minNonZero(lPut, d)
		d = push("Airlock", "ggcr push 3×200 MiB (streamed, 4 at a time)", 200<<20, func(u string) error {
			return ggcrPush(ctx, u, "local/bench/b", fmt.Sprintf("v%d", i), gB)
		})
		bPush = minNonZero(bPush, d)
	}
	n := imB.total()
	lCopy := timed("CopyObject 3×200 MiB", func() error { return limitCopy(ctx, s3c, "limit", imB.layers) })
	lGet := pull("limit get 3×200 MiB", func() error { return limitGet(ctx, s3c, "limit", imB.layers) })
	lPre := pull("limit presigned get 3×200 MiB", func() error { return limitPresignedGet(ctx, s3.NewPresignClient(s3c), "limit", imB.layers) })
	bPull := pull("Airlock ggcr pull 3×200 MiB", checkPull("Airlock", n, func() (int64, error) {
		return ggcrPull(ctx, sv.air.url, "local/bench/b", fmt.Sprintf("v%d", bigRuns-1))
	}))
	sec3.row("limit: Uploader put", mib(n), secs(lPut), rate(n, lPut), "", "", "")
	sec3.row("Airlock streamed push (ggcr)", mib(n), secs(bPush), rate(n, bPush), ratio(bPush.Seconds(), lPut.Seconds())+" of limit time", "≤ 1.2×", verdict(bPush.Seconds() <= 1.2*lPut.Seconds()))
	sec3.row("  (for scale: CopyObject of the same 3 objects)", mib(n), secs(lCopy), rate(n, lCopy), "", "", "")
	sec3.row("limit: GetObject get", mib(n), secs(lGet), rate(n, lGet), "", "", "")
	sec3.row("  (limit: GET of presigned URLs, net/http)", mib(n), secs(lPre), rate(n, lPre), ratio(lPre.Seconds(), lGet.Seconds())+" of limit time", "", "")
	sec3.row("Airlock pull (ggcr, 307 → presigned)", mib(n), secs(bPull), rate(n, bPull), ratio(bPull.Seconds(), lGet.Seconds())+" of limit time", "≤ 1.2×", verdict(bPull.Seconds() <= 1.2*lGet.Seconds()))

	// Chunked vs streamed, 3 × 20 MiB one layer after the other, own client.
	repo := map[string]string{"Airlock": "local/bench/", "distribution": "bench/"}
	seed := uint64(5000)
	for _, who := range []string{"Airlock", "distribution"} {
		times := map[int64]time.Duration{}
		var sizes int64
		n := rounds
		if who == "distribution" {
			n = 1 // its 256 KiB chunked push takes ~40 s
		}
		for range n {
			for _, chunk := range []int64{chunkSmall, 0, 4 << 20} {
				if chunk == 4<<20 && who == "distribution" {
					continue
				}
				im := newImage(seed, 3, 20<<20)
				seed += 10
				sizes = im.total()
				name := repo[who] + fmt.Sprintf("c%d", seed)
				d := push(who, "own client push 3×20 MiB, "+chunkLabel(chunk), max(chunk, 20<<20*boolInt(chunk == 0)), func(u string) error {
					return newClient(u).pushImage(ctx, name, "v1", im, chunk)
				})
				times[chunk] = minNonZero(times[chunk], d)
			}
		}
		for _, chunk := range []int64{chunkSmall, 0, 4 << 20} {
			if d, ok := times[chunk]; ok {
				sec3.row(who+" push "+chunkLabel(chunk), mib(sizes), secs(d), rate(sizes, d), "", "", "")
			}
		}
		ch, st := times[chunkSmall], times[0]
		target, ok := "", ""
		if who == "Airlock" {
			target, ok = "≤ 2×", verdict(ch.Seconds() <= 2*st.Seconds())
		}
		sec3.row(who+": 256 KiB chunked / streamed", "", "", "", ratio(ch.Seconds(), st.Seconds())+" of streamed time", target, ok)
	}
	sec3.note("3×200 MiB push and its limit: best of %d runs with fresh blobs; gets: best of %d", bigRuns, pulls)
	sec3.note("chunked and streamed 3×20 MiB pushes: own minimal client (POST, PATCHes, PUT ?digest=, then config and manifest), layers one after the other, each push on a fresh server; Airlock: best of %d rounds, distribution: 1", rounds)

	// 4. Peak RSS.
	sec4 := rep.section("4. Peak RSS of the server process during each push (fresh process per push; VmHWM from /proc/<pid>/status)",
		"server", "push", "largest request body", "RSS at start", "peak RSS (VmHWM)", "peak - start", "≈ target: 3 × part size per concurrent streamed request + overhead")
	for _, p := range peaks {
		tgt := "-"
		if p.who == "Airlock" {
			tgt = "3 × " + mib(s3store.DefaultPartSize) + " per stream + overhead"
		}
		sec4.row(p.who, p.push, kib(p.body), mibf(p.start.rss), mibf(p.end.hwm), mibf(p.end.hwm-p.start.rss), tgt)
	}
	sec4.note("Airlock's s3store part size is %s: a streamed body is cut into parts, one uploading while the next is read and one full part held back so that a short tail joins it (3 parts per streamed request); a chunk is held in memory once and staged, and staged chunks are read back into one part, so the largest buffers are parts, not the request body", mib(s3store.DefaultPartSize))
}

// chunkLabel describes a push by its chunk size (0: streamed).
func chunkLabel(chunk int64) string {
	if chunk == 0 {
		return "streamed (1 PATCH per layer)"
	}
	return kib(chunk) + " chunks (PATCH + Content-Range)"
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// minNonZero returns the smaller of a and b, treating a zero a as unset.
func minNonZero(a, b time.Duration) time.Duration {
	if a == 0 {
		return b
	}
	return min(a, b)
}

// kib formats bytes as KiB or MiB.
func kib(n int64) string {
	if n >= 1<<20 {
		return mib(n)
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

// mibf formats bytes as MiB with one decimal.
func mibf(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
