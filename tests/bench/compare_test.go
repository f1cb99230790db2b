//go:build bench

package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/airlock-registry/airlock/localdev/harness"
	"github.com/airlock-registry/airlock/shared/storage/s3store"
)

// chunkSmall is the chunk size of the chunked push compared with a streamed
// one (DESIGN §4: 3 × 20 MiB in 256 KiB chunks).
const chunkSmall = 256 << 10

// benchCompare measures parts 2-4: distribution vs Airlock, Airlock vs the
// S3 limit, chunked vs streamed pushes, and Airlock's peak RSS.
func benchCompare(t *testing.T, rep *report, distBin, data, dynamoURL, s3URL string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
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
	dist := startDistribution(t, distBin, data, s3URL, "distribution")
	air := startAirlock(t, data, dynamoURL, "bench", s3URL, "airlock")
	idle, err := readMemory(air.pid())
	if err != nil {
		t.Fatal(err)
	}
	distIdle, _ := readMemory(dist.pid())

	// run times f, failing the test on error; with p set it also returns p's
	// peak RSS during f.
	run := func(what string, p *proc, f func() error) (time.Duration, memory) {
		t.Helper()
		if p != nil {
			if err := resetPeak(p.pid()); err != nil {
				t.Logf("reset peak RSS of %s: %v", p.name, err)
			}
		}
		start := time.Now()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		d := time.Since(start)
		var m memory
		if p != nil {
			m, _ = readMemory(p.pid())
		}
		t.Logf("%s: %s", what, secs(d))
		return d, m
	}
	type rss struct {
		who, push string
		chunk     int64
		m         memory
	}
	var peaks []rss

	// 2. The same 60 MiB image through both registries, with go-containerregistry.
	sec2 := rep.section("2. Same image on the same versitygw: CNCF distribution v3.1.2 (s3 driver, redirect on) vs Airlock (own process); client: go-containerregistry remote, in-process",
		"image", "op", "distribution", "Airlock", "throughput Airlock/distribution", "target", "")
	imA := newImage(3000, 3, 20<<20)
	gA, err := ggcrImage(imA)
	if err != nil {
		t.Fatal(err)
	}
	dPush, dm := run("distribution ggcr push 3×20 MiB", dist, func() error { return ggcrPush(ctx, dist.url, "bench/a", "v1", gA) })
	aPush, am := run("Airlock ggcr push 3×20 MiB", air, func() error { return ggcrPush(ctx, air.url, "local/bench/a", "v1", gA) })
	peaks = append(peaks, rss{"distribution", "ggcr push 3×20 MiB (streamed, 4 at a time)", 20 << 20, dm}, rss{"Airlock", "ggcr push 3×20 MiB (streamed, 4 at a time)", 20 << 20, am})
	var dn, an int64
	dPull, _ := run("distribution ggcr pull", nil, func() (err error) { dn, err = ggcrPull(ctx, dist.url, "bench/a", "v1"); return })
	aPull, _ := run("Airlock ggcr pull", nil, func() (err error) { an, err = ggcrPull(ctx, air.url, "local/bench/a", "v1"); return })
	if dn != imA.total() || an != imA.total() {
		t.Errorf("pulled %d and %d bytes, want %d", dn, an, imA.total())
	}
	sec2.row("3 × 20 MiB", "push", secs(dPush)+" "+rate(imA.total(), dPush), secs(aPush)+" "+rate(imA.total(), aPush),
		ratio(dPush.Seconds(), aPush.Seconds()), "≥ 1.0×", verdict(dPush >= aPush))
	sec2.row("3 × 20 MiB", "pull", secs(dPull)+" "+rate(imA.total(), dPull), secs(aPull)+" "+rate(imA.total(), aPull),
		ratio(dPull.Seconds(), aPull.Seconds()), "≥ 1.0×", verdict(dPull >= aPull))
	sec2.note("push: HEAD, POST, one streamed PATCH, PUT ?digest= per blob, then the manifest; pull: manifest, config, 3 layers in parallel following the 307 to versitygw, digests verified")

	// 3. Airlock against the limit: the SDK straight to the same versitygw.
	sec3 := rep.section("3. Airlock vs the limit (same versitygw; limit = SDK s3/manager Uploader put and GetObject get, SHA-256 while streaming, 3 blobs at a time)",
		"what", "bytes", "time", "throughput", "ratio", "target", "")
	imB := newImage(4000, 3, 200<<20)
	gB, err := ggcrImage(imB)
	if err != nil {
		t.Fatal(err)
	}
	lPut, _ := run("limit put 3×200 MiB", nil, func() error { return limitPut(ctx, s3c, "limit", imB.layers) })
	lGet, _ := run("limit get 3×200 MiB", nil, func() error { return limitGet(ctx, s3c, "limit", imB.layers) })
	bPush, bm := run("Airlock ggcr push 3×200 MiB", air, func() error { return ggcrPush(ctx, air.url, "local/bench/b", "v1", gB) })
	peaks = append(peaks, rss{"Airlock", "ggcr push 3×200 MiB (streamed, 4 at a time)", 200 << 20, bm})
	var bn int64
	bPull, _ := run("Airlock ggcr pull 3×200 MiB", nil, func() (err error) { bn, err = ggcrPull(ctx, air.url, "local/bench/b", "v1"); return })
	if bn != imB.total() {
		t.Errorf("pulled %d bytes, want %d", bn, imB.total())
	}
	n := imB.total()
	sec3.row("limit: Uploader put", mib(n), secs(lPut), rate(n, lPut), "", "", "")
	sec3.row("Airlock streamed push (ggcr)", mib(n), secs(bPush), rate(n, bPush), ratio(bPush.Seconds(), lPut.Seconds())+" of limit time", "≤ 1.2×", verdict(bPush.Seconds() <= 1.2*lPut.Seconds()))
	sec3.row("limit: GetObject get", mib(n), secs(lGet), rate(n, lGet), "", "", "")
	sec3.row("Airlock pull (ggcr, 307 → presigned)", mib(n), secs(bPull), rate(n, bPull), ratio(bPull.Seconds(), lGet.Seconds())+" of limit time", "≤ 1.2×", verdict(bPull.Seconds() <= 1.2*lGet.Seconds()))

	// Chunked vs streamed, 3 × 20 MiB one layer after the other, own client.
	cl := map[string]*client{"Airlock": newClient(air.url), "distribution": newClient(dist.url)}
	repo := map[string]string{"Airlock": "local/bench/", "distribution": "bench/"}
	pushTimes := map[string]time.Duration{}
	seed := uint64(5000)
	for _, who := range []string{"Airlock", "distribution"} {
		p := air
		if who == "distribution" {
			p = dist
		}
		for _, chunk := range []int64{chunkSmall, 0, 4 << 20} {
			if chunk == 4<<20 && who == "distribution" {
				continue
			}
			im := newImage(seed, 3, 20<<20)
			seed += 10
			label := "streamed (1 PATCH per layer)"
			if chunk > 0 {
				label = fmt.Sprintf("%s chunks (PATCH + Content-Range)", kib(chunk))
			}
			d, m := run(who+" push 3×20 MiB "+label, p, func() error {
				return cl[who].pushImage(ctx, repo[who]+fmt.Sprintf("c%d", seed), "v1", im, chunk)
			})
			pushTimes[fmt.Sprint(who, chunk)] = d
			peaks = append(peaks, rss{who, "own client push 3×20 MiB, " + label, max(chunk, 20<<20*boolInt(chunk == 0)), m})
			sec3.row(who+" push "+label, mib(im.total()), secs(d), rate(im.total(), d), "", "", "")
		}
		ch, st := pushTimes[fmt.Sprint(who, chunkSmall)], pushTimes[fmt.Sprint(who, 0)]
		target, ok := "", ""
		if who == "Airlock" {
			target, ok = "≤ 2×", verdict(ch.Seconds() <= 2*st.Seconds())
		}
		sec3.row(who+": 256 KiB chunked / streamed", "", "", "", ratio(ch.Seconds(), st.Seconds())+" of streamed time", target, ok)
	}
	sec3.note("chunked and streamed pushes here: own minimal client (POST, PATCHes, PUT ?digest=, then config and manifest), layers one after the other")

	// 4. Peak RSS.
	sec4 := rep.section("4. Peak RSS during each push (VmHWM from /proc/<pid>/status, reset via clear_refs before each push)",
		"server", "push", "largest request body", "peak RSS", "idle RSS at start", "≈ target: idle + 2 × part size")
	for _, p := range peaks {
		idl := idle
		if p.who == "distribution" {
			idl = distIdle
		}
		tgt := "-"
		if p.who == "Airlock" {
			tgt = mibf(idl.rss + 2*s3store.DefaultPartSize)
		}
		sec4.row(p.who, p.push, kib(p.chunk), mibf(p.m.hwm), mibf(idl.rss), tgt)
	}
	sec4.note("Airlock's s3store part size is %s: a streamed body is cut into parts, and short chunks are staged and read back into one part, so the largest buffer is a part, not the request body", mib(s3store.DefaultPartSize))
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
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
