package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/term"
)

// progress shows what the push does: one bar per blob, redrawn in place on a
// terminal; plain lines otherwise (logs, CI), or nothing (--quiet).
type progress interface {
	// sent reports n more bytes of blob d (of size bytes) sent.
	sent(d v1.Hash, size, n int64)
	// state reports a step of blob d: "done", "skipped (present)",
	// "mounted from <repo>", "verifying", "resuming (k of n parts sent)".
	state(d v1.Hash, size int64, msg string)
	// logf prints a line of its own.
	logf(format string, a ...any)
	// close draws the last frame.
	close()
}

// newProgress picks bars when w is a terminal, else plain lines.
func newProgress(w io.Writer, quiet bool) progress {
	if quiet {
		return quietProgress{}
	}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		width, _, err := term.GetSize(int(f.Fd()))
		if err != nil || width < 40 {
			width = 80
		}
		b := &bars{w: w, width: width, rows: map[v1.Hash]*row{}, stop: make(chan struct{}), stopped: make(chan struct{})}
		go b.loop()
		return b
	}
	return &lines{w: w}
}

type quietProgress struct{}

func (quietProgress) sent(v1.Hash, int64, int64)   {}
func (quietProgress) state(v1.Hash, int64, string) {}
func (quietProgress) logf(string, ...any)          {}
func (quietProgress) close()                       {}

// lines prints a line per part sent and per step: "<digest> <sent>/<size> [<step>]".
type lines struct {
	mu   sync.Mutex
	w    io.Writer
	done map[v1.Hash]int64
}

func (l *lines) sent(d v1.Hash, size, n int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done == nil {
		l.done = map[v1.Hash]int64{}
	}
	l.done[d] += n
	if l.done[d] < size {
		fmt.Fprintf(l.w, "%s %d/%d\n", short(d), l.done[d], size)
	}
}

func (l *lines) state(d v1.Hash, size int64, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.done[d]
	if finished(msg) || msg == "verifying" {
		n = size
	}
	fmt.Fprintf(l.w, "%s %d/%d %s\n", short(d), n, size, msg)
}

func (l *lines) logf(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format+"\n", a...)
}

func (l *lines) close() {}

// bars redraws one line per blob in place, five times a second.
type bars struct {
	mu      sync.Mutex
	w       io.Writer
	width   int
	order   []v1.Hash
	rows    map[v1.Hash]*row
	msgs    []string // lines to print above the bars
	drawn   int      // bar lines on screen
	stop    chan struct{}
	stopped chan struct{}
	once    sync.Once
}

type row struct {
	size, done int64
	msg        string
	start      time.Time
}

func (b *bars) rowLocked(d v1.Hash, size int64) *row {
	r := b.rows[d]
	if r == nil {
		r = &row{size: size, start: time.Now()}
		b.rows[d] = r
		b.order = append(b.order, d)
	}
	return r
}

func (b *bars) sent(d v1.Hash, size, n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.rowLocked(d, size)
	r.done += n
	if r.msg == "" || strings.HasPrefix(r.msg, "resuming") {
		r.msg = "uploading"
	}
}

// state of a finished blob prints its last line above the bars and drops
// its bar: the bars are the blobs in flight (at most --jobs), whatever the
// terminal's height.
func (b *bars) state(d v1.Hash, size int64, msg string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.rowLocked(d, size)
	r.msg = msg
	if finished(msg) {
		r.done = size
		b.msgs = append(b.msgs, b.line(d, r))
		delete(b.rows, d)
		b.order = slices.DeleteFunc(b.order, func(h v1.Hash) bool { return h == d })
	}
}

func finished(msg string) bool {
	return msg == "done" || strings.HasPrefix(msg, "skipped") || strings.HasPrefix(msg, "mounted")
}

func (b *bars) logf(format string, a ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.msgs = append(b.msgs, fmt.Sprintf(format, a...))
}

func (b *bars) loop() {
	defer close(b.stopped)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			b.draw()
			return
		case <-t.C:
			b.draw()
		}
	}
}

func (b *bars) close() {
	b.once.Do(func() { close(b.stop); <-b.stopped })
}

// draw moves the cursor up over the previous frame and writes the new one.
func (b *bars) draw() {
	b.mu.Lock()
	defer b.mu.Unlock()
	var s strings.Builder
	if b.drawn > 0 {
		fmt.Fprintf(&s, "\x1b[%dA", b.drawn)
	}
	msgs := b.msgs
	for _, m := range msgs {
		s.WriteString("\r\x1b[2K" + m + "\n")
	}
	b.msgs = nil
	for _, d := range b.order {
		s.WriteString("\r\x1b[2K" + b.line(d, b.rows[d]) + "\n")
	}
	for range b.drawn - len(b.order) - len(msgs) { // clear what finished blobs leave below
		s.WriteString("\r\x1b[2K\n")
	}
	if extra := b.drawn - len(b.order) - len(msgs); extra > 0 {
		fmt.Fprintf(&s, "\x1b[%dA", extra)
	}
	b.drawn = len(b.order)
	_, _ = io.WriteString(b.w, s.String())
}

// line is "<digest> [=====>    ]  12.0/60.0 MiB  20 MiB/s  uploading".
func (b *bars) line(d v1.Hash, r *row) string {
	const barWidth = 24
	frac := 1.0
	if r.size > 0 {
		frac = float64(r.done) / float64(r.size)
	}
	fill := int(frac * barWidth)
	bar := strings.Repeat("=", fill)
	if fill < barWidth {
		bar += ">" + strings.Repeat(" ", barWidth-fill-1)
	}
	rate := ""
	if el := time.Since(r.start).Seconds(); el > 0.5 && r.done > 0 && r.done < r.size {
		rate = fmt.Sprintf(" %5.1f MiB/s", float64(r.done)/mib/el)
	}
	amount := fmt.Sprintf("%7.1f/%.1f MiB", float64(r.done)/mib, float64(r.size)/mib)
	if r.size < mib {
		amount = fmt.Sprintf("%7.1f/%.1f KiB", float64(r.done)/1024, float64(r.size)/1024)
	}
	s := fmt.Sprintf("%s [%s] %s%s %s", short(d), bar, amount, rate, r.msg)
	if len(s) > b.width-1 {
		s = s[:b.width-1]
	}
	return s
}
