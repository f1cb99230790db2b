package upstreamtest

import (
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Fault is a misbehaviour of the Upstream, switched on with
// [Upstream.SetFault]. The zero Fault is [FaultNone].
type Fault struct {
	kind       faultKind
	status     int
	retryAfter string
	d          time.Duration
	kinds      []string // request kinds it applies to; nil: the default ones
	times      int      // >0: applies to that many more requests, then FaultNone
}

type faultKind int

const (
	faultNone faultKind = iota
	faultDown
	faultReset
	faultStatus
	faultTooMany
	faultCorruptBlobs
	faultSlowBlobs
	faultHang
)

var (
	// FaultNone: the Upstream behaves.
	FaultNone = Fault{}
	// FaultDown: connection refused. The registry's listener is closed and
	// its open connections with it (requests in flight fail); SetFault of
	// anything else listens again on the same address. The token endpoint
	// goes down with it; the CDN stays up. On and Times do not apply.
	FaultDown = Fault{kind: faultDown}
	// FaultReset: the connection is hijacked and closed with SO_LINGER 0
	// before any response, so the client reads a TCP RST ("connection reset
	// by peer", or EOF).
	FaultReset = Fault{kind: faultReset}
	// FaultCorruptBlobs: blob bodies (from the registry or the CDN) are
	// served with their middle byte inverted, same length and headers, so
	// only digest verification can tell.
	FaultCorruptBlobs = Fault{kind: faultCorruptBlobs}
	// FaultHang: the request is never answered, not even with headers,
	// until the client gives up (or the test ends).
	FaultHang = Fault{kind: faultHang}
)

// FaultStatus answers every affected request with code and an error body
// {"errors":[{"code":...,"message":...}]} whose code fits the status
// (UNAVAILABLE for 503, UNKNOWN for 500, DENIED for 403, ...).
func FaultStatus(code int) Fault { return Fault{kind: faultStatus, status: code} }

// FaultTooManyRequests answers 429 with Retry-After: retryAfter (omitted if
// empty), Docker Hub's "ratelimit-limit: 100;w=21600" and
// "ratelimit-remaining: 0;w=21600", and a TOOMANYREQUESTS error body.
func FaultTooManyRequests(retryAfter string) Fault {
	return Fault{kind: faultTooMany, status: http.StatusTooManyRequests, retryAfter: retryAfter}
}

// FaultSlowBlobs sends blob bodies' headers at once and then trickles the
// bytes in about 20 ticks so the whole body takes about d. It stops as soon
// as the client goes away.
func FaultSlowBlobs(d time.Duration) Fault { return Fault{kind: faultSlowBlobs, d: d} }

// On returns f restricted to requests of these kinds (see the package
// documentation). By default FaultReset, FaultStatus, FaultTooManyRequests
// and FaultHang apply to every /v2/ request (not "token" or "cdn", which On
// can name), and FaultCorruptBlobs and FaultSlowBlobs to the bodies of
// "blob" and "cdn" GETs. FaultDown ignores On.
func (f Fault) On(kinds ...string) Fault {
	f.kinds = slices.Clone(kinds)
	return f
}

// Times returns f applying to the next n requests it would affect only;
// after them the Upstream behaves as with FaultNone. FaultDown ignores it.
func (f Fault) Times(n int) Fault {
	f.times = n
	return f
}

// String describes f, e.g. "FaultStatus(503).On(manifest).Times(1)".
func (f Fault) String() string {
	var s string
	switch f.kind {
	case faultNone:
		s = "FaultNone"
	case faultDown:
		s = "FaultDown"
	case faultReset:
		s = "FaultReset"
	case faultStatus:
		s = fmt.Sprintf("FaultStatus(%d)", f.status)
	case faultTooMany:
		s = fmt.Sprintf("FaultTooManyRequests(%q)", f.retryAfter)
	case faultCorruptBlobs:
		s = "FaultCorruptBlobs"
	case faultSlowBlobs:
		s = fmt.Sprintf("FaultSlowBlobs(%v)", f.d)
	case faultHang:
		s = "FaultHang"
	}
	if f.kinds != nil {
		s += ".On(" + strings.Join(f.kinds, ",") + ")"
	}
	if f.times > 0 {
		s += ".Times(" + strconv.Itoa(f.times) + ")"
	}
	return s
}

// isBody reports whether f acts on blob bodies rather than on requests.
func (f Fault) isBody() bool { return f.kind == faultCorruptBlobs || f.kind == faultSlowBlobs }

// applies reports whether f affects a request of this kind.
func (f Fault) applies(kind string) bool {
	if f.kinds != nil {
		return slices.Contains(f.kinds, kind)
	}
	if f.isBody() {
		return kind == "blob" || kind == "cdn"
	}
	return kind != "token" && kind != "cdn"
}

// SetFault switches the Upstream's misbehaviour to f, at once: requests that
// arrive from now on see it (a body already being sent keeps the fault it
// started with). Switching to or from FaultDown closes or reopens the
// registry's listener on its address.
func (u *Upstream) SetFault(f Fault) {
	u.fmu.Lock()
	defer u.fmu.Unlock()
	u.mu.Lock()
	closed := u.closed
	u.mu.Unlock()
	if f.kind == faultDown {
		u.mu.Lock()
		u.fault = f
		u.mu.Unlock()
		u.main.stop()
		return
	}
	if !closed {
		if err := u.main.start(""); err != nil {
			u.t.Errorf("upstreamtest: listening again on %s: %v", u.Host(), err)
		}
	}
	u.mu.Lock()
	u.fault = f
	u.mu.Unlock()
}

// take returns the current fault if it applies to a request of this kind,
// and is a body fault or not as asked, spending one of its Times.
func (u *Upstream) take(kind string, body bool) (Fault, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	f := u.fault
	if f.kind == faultNone || f.kind == faultDown || f.isBody() != body || !f.applies(kind) {
		return FaultNone, false
	}
	if f.times > 0 {
		u.fault.times--
		if u.fault.times == 0 {
			u.fault = FaultNone
		}
	}
	return f, true
}

// requestFault applies a request fault to r, if one is on for its kind, and
// reports whether it did (then the request is finished).
func (u *Upstream) requestFault(w *respWriter, r *http.Request) bool {
	f, ok := u.take(w.rec.Kind, false)
	if !ok {
		return false
	}
	switch f.kind {
	case faultReset:
		if c, _, err := http.NewResponseController(w.ResponseWriter).Hijack(); err == nil {
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
		}
	case faultHang:
		_ = u.sleep(r.Context(), 24*time.Hour)
	case faultTooMany:
		h := w.Header()
		if f.retryAfter != "" {
			h.Set("Retry-After", f.retryAfter)
		}
		h.Set("ratelimit-limit", strconv.Itoa(rateLimit)+rateLimitWindow)
		h.Set("ratelimit-remaining", "0"+rateLimitWindow)
		writeError(w, f.status, "TOOMANYREQUESTS", "upstreamtest: injected 429, too many requests")
	case faultStatus:
		writeError(w, f.status, errorCode(f.status), fmt.Sprintf("upstreamtest: injected %d", f.status))
	}
	return true
}

// errorCode is the distribution-spec error code that fits a status.
func errorCode(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "UNAUTHORIZED"
	case http.StatusForbidden:
		return "DENIED"
	case http.StatusNotFound:
		return "NAME_UNKNOWN"
	case http.StatusTooManyRequests:
		return "TOOMANYREQUESTS"
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return "UNAVAILABLE"
	}
	return "UNKNOWN"
}

// writeError answers status with a distribution-spec error body.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q}]}`+"\n", code, msg)
}

// startBodyFault arms a body fault, if one is on, for a blob body about to
// be written.
func (w *respWriter) startBodyFault(kind string) {
	f, ok := w.u.take(kind, true)
	if !ok {
		return
	}
	w.body = f
	w.total = -1
	if n, err := strconv.ParseInt(w.Header().Get("Content-Length"), 10, 64); err == nil {
		w.total = n
	}
	if f.kind == faultSlowBlobs {
		ticks := int64(20)
		if w.total >= 0 && w.total < ticks {
			ticks = max(w.total, 1)
		}
		w.perTick = int64(f.d) / ticks
		w.chunk = 1 << 62 // unknown length: one tick, then everything
		if w.total > 0 {
			w.chunk = (w.total + ticks - 1) / ticks
		}
	}
}

// writeCorrupt writes p with the body's middle byte (its first if the
// length is unknown) inverted.
func (w *respWriter) writeCorrupt(p []byte) (int, error) {
	at := max(w.total/2, 0)
	if at >= w.pos && at < w.pos+int64(len(p)) {
		q := slices.Clone(p)
		q[at-w.pos] ^= 0xff
		p = q
	}
	n, err := w.ResponseWriter.Write(p)
	w.pos += int64(n)
	return n, err
}

// writeSlow writes p a chunk per tick, flushing each.
func (w *respWriter) writeSlow(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if w.pos%w.chunk == 0 {
			if err := w.u.sleep(w.r.Context(), time.Duration(w.perTick)); err != nil {
				return written, err
			}
		}
		n := int(min(w.chunk-w.pos%w.chunk, int64(len(p))))
		m, err := w.ResponseWriter.Write(p[:n])
		written += m
		w.pos += int64(m)
		if err != nil {
			return written, err
		}
		w.Flush()
		p = p[n:]
	}
	return written, nil
}
