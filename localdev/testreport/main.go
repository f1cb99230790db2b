// Command testreport records the `go test -json` streams of `make test` and
// prints, at the end, what the run skipped and why.
//
//	go test -json ./... | testreport record -o dist/unit.json [-log dist/unit.log] [-v]
//	testreport summary -root . test-unit=dist/unit.json test-e2e=dist/e2e.json ...
//
// record copies its input (go test -json, or `go tool test2json` around a
// prebuilt test binary) to -o (appending) and prints it readably: with -v the
// text `go test -v` would print, without it what plain `go test` prints (one
// line per package; the output of failing tests only). -log gets the -v text.
// It always exits 0: the Makefile takes the tests' exit status from the pipe
// (pipefail).
//
// summary reads the recorded files and prints, per suite, the counts, the
// failed tests and every skipped test with its reason; the full list of skips
// goes to -list (default <root>/dist/skipped.txt). A suite whose file is
// missing or empty is reported as not run. It always exits 0.
//
// The reason of a skip is taken from the skipped test's own output events
// (test2json attributes every line to its test, so parallel subtests whose
// "--- SKIP" lines come long after their messages are no problem): the log
// entry written by the t.Skip call, found by reading the source line each
// entry names ("file.go:NN: "), because cleanups may log after the skip.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// event is one line of `go test -json` (cmd/test2json's TestEvent).
type event struct {
	Action     string
	Package    string
	Test       string
	Elapsed    float64
	Output     string
	ImportPath string // build-output and build-fail events
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "record":
		flags := flag.NewFlagSet("record", flag.ExitOnError)
		out := flags.String("o", "", "append the JSON stream to this file")
		logPath := flags.String("log", "", "write the verbose text to this file (truncated)")
		verbose := flags.Bool("v", false, "print the verbose text (go test -v) instead of go test's short form")
		_ = flags.Parse(os.Args[2:])
		if err := record(os.Stdin, os.Stdout, *out, *logPath, *verbose); err != nil {
			fmt.Fprintln(os.Stderr, "testreport:", err)
		}
	case "summary":
		flags := flag.NewFlagSet("summary", flag.ExitOnError)
		root := flags.String("root", ".", "module root (go.mod), to read the source lines log entries name")
		list := flags.String("list", "", "write every skip to this file (default <root>/dist/skipped.txt)")
		_ = flags.Parse(os.Args[2:])
		if *list == "" {
			*list = filepath.Join(*root, "dist", "skipped.txt")
		}
		var suites []suiteFile
		for _, a := range flags.Args() {
			name, file, ok := strings.Cut(a, "=")
			if !ok {
				usage()
			}
			suites = append(suites, suiteFile{name, file})
		}
		summary(os.Stdout, *root, *list, suites)
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: testreport record -o FILE [-log FILE] [-v] < go-test-json\n       testreport summary [-root DIR] [-list FILE] SUITE=FILE...")
	os.Exit(2)
}

// ---------------------------------------------------------------------------
// record

func record(in io.Reader, console io.Writer, out, logPath string, verbose bool) error {
	var rec, logw io.Writer = io.Discard, io.Discard
	if out != "" {
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		rec = f
	}
	if logPath != "" {
		f, err := os.Create(logPath)
		if err != nil {
			return err
		}
		defer f.Close()
		logw = f
	}
	r := newRenderer(console, verbose)
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			// Not an event (a tool's own message): show it as it is.
			fmt.Fprintf(console, "%s\n", line)
			fmt.Fprintf(logw, "%s\n", line)
			continue
		}
		fmt.Fprintf(rec, "%s\n", line)
		if e.Action == "output" || e.Action == "build-output" {
			io.WriteString(logw, e.Output)
		}
		r.event(e)
	}
	r.finish()
	return sc.Err()
}

// renderer prints events as go test would: everything with -v; otherwise the
// package lines and the output of failing tests.
type renderer struct {
	w       io.Writer
	verbose bool
	pkgs    map[string]*pkgState
}

type pkgState struct {
	trees     map[string][]entry // top-level test -> its output and its subtests', in order
	results   map[string]string  // test -> pass | fail | skip
	summaryOK bool               // go test printed its "ok"/"FAIL"/"?" line
	start     time.Time
}

type entry struct{ test, line string }

func newRenderer(w io.Writer, verbose bool) *renderer {
	return &renderer{w: w, verbose: verbose, pkgs: map[string]*pkgState{}}
}

func (r *renderer) pkg(name string) *pkgState {
	p := r.pkgs[name]
	if p == nil {
		p = &pkgState{trees: map[string][]entry{}, results: map[string]string{}, start: time.Now()}
		r.pkgs[name] = p
	}
	return p
}

func topLevel(test string) string {
	top, _, _ := strings.Cut(test, "/")
	return top
}

var markerRE = regexp.MustCompile(`^\s*=== (RUN|PAUSE|CONT|NAME)\b`)

func (r *renderer) event(e event) {
	if e.Action == "build-output" {
		io.WriteString(r.w, e.Output)
		return
	}
	if r.verbose {
		if e.Action == "output" {
			io.WriteString(r.w, e.Output)
		}
		return
	}
	p := r.pkg(e.Package)
	switch {
	case e.Test != "" && e.Action == "output":
		top := topLevel(e.Test)
		p.trees[top] = append(p.trees[top], entry{e.Test, e.Output})
	case e.Test != "" && (e.Action == "pass" || e.Action == "fail" || e.Action == "skip"):
		p.results[e.Test] = e.Action
		if e.Test == topLevel(e.Test) {
			if e.Action == "fail" {
				r.flush(p, e.Test)
			}
			delete(p.trees, e.Test)
		}
	case e.Test == "" && e.Action == "output":
		line := e.Output
		switch {
		case line == "PASS\n":
			return // go test hides it when the package passes
		case strings.HasPrefix(line, "ok  \t"), strings.HasPrefix(line, "?   \t"):
			p.summaryOK = true
		case strings.HasPrefix(line, "FAIL\t"):
			r.flushAll(p)
			p.summaryOK = true
		}
		io.WriteString(r.w, line)
	case e.Test == "" && (e.Action == "pass" || e.Action == "fail" || e.Action == "skip"):
		if e.Action == "fail" {
			r.flushAll(p)
		}
		if !p.summaryOK { // a test binary under test2json: no go test line
			elapsed := e.Elapsed
			if elapsed == 0 {
				elapsed = time.Since(p.start).Seconds()
			}
			switch e.Action {
			case "pass":
				fmt.Fprintf(r.w, "ok  \t%s\t%.3fs\n", e.Package, elapsed)
			case "fail":
				fmt.Fprintf(r.w, "FAIL\t%s\t%.3fs\n", e.Package, elapsed)
			}
		}
		delete(r.pkgs, e.Package)
	}
}

// flush prints the output of the failed test top and of its failed subtests.
func (r *renderer) flush(p *pkgState, top string) {
	for _, en := range p.trees[top] {
		if markerRE.MatchString(en.line) {
			continue
		}
		if res, done := p.results[en.test]; en.test == top || !done || res == "fail" {
			io.WriteString(r.w, en.line)
		}
	}
	delete(p.trees, top)
}

// flushAll prints what tests still running when their package failed
// (a panic, a timeout) wrote.
func (r *renderer) flushAll(p *pkgState) {
	tops := make([]string, 0, len(p.trees))
	for t := range p.trees {
		tops = append(tops, t)
	}
	sort.Strings(tops)
	for _, t := range tops {
		r.flush(p, t)
	}
}

func (r *renderer) finish() {
	for _, p := range r.pkgs {
		r.flushAll(p)
	}
}

// ---------------------------------------------------------------------------
// summary

type suiteFile struct{ name, file string }

type skip struct {
	suite, pkg, test, reason string
}

type suiteResult struct {
	ran               bool
	pass, fail, nskip int
	failed            []string // "<pkg> <test>" of failed top-level tests, "<pkg>" of failed packages
	skips             []skip
	unreadable        error
}

func summary(w io.Writer, root, listPath string, suites []suiteFile) {
	src := newSources(root)
	results := make([]suiteResult, len(suites))
	var all []skip
	for i, s := range suites {
		results[i] = readSuite(s, src)
		all = append(all, results[i].skips...)
	}

	fmt.Fprintln(w)
	fmt.Fprintln(w, "==== test summary")
	width := 0
	for _, s := range suites {
		width = max(width, len(s.name))
	}
	for i, s := range suites {
		r := results[i]
		if errors.Is(r.unreadable, fs.ErrNotExist) {
			r.unreadable = fmt.Errorf("no %s", relTo(root, s.file))
		}
		switch {
		case r.unreadable != nil:
			fmt.Fprintf(w, "%-*s  not run (%v)\n", width, s.name, r.unreadable)
		case !r.ran:
			fmt.Fprintf(w, "%-*s  not run (%s holds no test results)\n", width, s.name, relTo(root, s.file))
		default:
			fmt.Fprintf(w, "%-*s  %d passed, %d failed, %d skipped\n", width, s.name, r.pass, r.fail, r.nskip)
		}
		for _, f := range r.failed {
			fmt.Fprintf(w, "%-*s    FAIL %s\n", width, "", f)
		}
	}

	if len(all) == 0 {
		fmt.Fprintln(w, "no test skipped")
	} else {
		fmt.Fprintf(w, "skipped: %d\n", len(all))
		for i, s := range suites {
			if len(results[i].skips) == 0 {
				continue
			}
			fmt.Fprintf(w, "  %s:\n", s.name)
			for _, line := range groupSkips(results[i].skips) {
				fmt.Fprintf(w, "    %s\n", line)
			}
		}
	}
	if err := writeList(listPath, all); err != nil {
		fmt.Fprintln(w, "testreport:", err)
	} else if len(all) > 0 {
		fmt.Fprintf(w, "(every skip, one a line: %s)\n", relTo(root, listPath))
	}
}

func relTo(root, p string) string {
	if r, err := filepath.Rel(root, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}

func writeList(path string, all []skip) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	var b strings.Builder
	for _, s := range all {
		fmt.Fprintf(&b, "%s %s %s: %s\n", s.suite, s.pkg, s.test, s.reason)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func readSuite(s suiteFile, src *sources) suiteResult {
	var r suiteResult
	f, err := os.Open(s.file)
	if err != nil {
		r.unreadable = err
		return r
	}
	defer f.Close()
	type key struct{ pkg, test string }
	out := map[key][]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		if e.Action == "build-fail" {
			r.ran = true
			r.failed = append(r.failed, src.short(e.ImportPath)+" (build failed)")
			continue
		}
		if e.Test == "" {
			switch e.Action {
			case "pass", "skip":
				r.ran = true
			case "fail":
				r.ran = true
				r.failed = append(r.failed, src.short(e.Package))
			}
			continue
		}
		k := key{e.Package, e.Test}
		switch e.Action {
		case "output":
			out[k] = append(out[k], e.Output)
		case "pass":
			r.pass++
			delete(out, k)
		case "fail":
			r.fail++
			if !strings.Contains(e.Test, "/") {
				r.failed = append(r.failed, src.short(e.Package)+" "+e.Test)
			}
			delete(out, k)
		case "skip":
			r.nskip++
			pkg := src.short(e.Package)
			r.skips = append(r.skips, skip{s.name, pkg, e.Test, src.reason(pkg, out[k])})
			delete(out, k)
		}
	}
	// A failed package's own line repeats its failed tests: keep the package
	// only when none of its tests is listed (a build failure, a panic in TestMain).
	r.failed = dedupeFailed(r.failed)
	return r
}

func dedupeFailed(failed []string) []string {
	withTests := map[string]bool{}
	for _, f := range failed {
		if pkg, _, ok := strings.Cut(f, " "); ok {
			withTests[pkg] = true
		}
	}
	var out []string
	for _, f := range failed {
		if !strings.Contains(f, " ") && withTests[f] {
			continue
		}
		out = append(out, f)
	}
	return out
}

// groupSkips renders one line per skip, "<package> <test>: <reason>"; more
// than three skips of one package with the same reason (subtests skipped by
// design, say a capability a store lacks) share one line naming them all.
func groupSkips(skips []skip) []string {
	type key struct{ pkg, reason string }
	var order []key
	groups := map[key][]string{}
	for _, s := range skips {
		k := key{s.pkg, s.reason}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], s.test)
	}
	var lines []string
	for _, k := range order {
		tests := groups[k]
		if len(tests) <= 3 {
			for _, t := range tests {
				lines = append(lines, fmt.Sprintf("%s %s: %s", k.pkg, t, k.reason))
			}
			continue
		}
		lines = append(lines, fmt.Sprintf("%s %s (%d tests): %s", k.pkg, compress(tests), len(tests), k.reason))
	}
	return lines
}

// compress writes test names sharing their leading path elements once:
// TestA/x/one, TestA/x/two -> TestA/x/{one,two}.
func compress(tests []string) string {
	sorted := append([]string(nil), tests...)
	sort.Strings(sorted)
	prefix := strings.Split(sorted[0], "/")
	for _, t := range sorted[1:] {
		parts := strings.Split(t, "/")
		n := 0
		for n < len(prefix) && n < len(parts)-1 && prefix[n] == parts[n] {
			n++
		}
		prefix = prefix[:n]
	}
	if len(prefix) > len(strings.Split(sorted[0], "/"))-1 {
		prefix = prefix[:len(prefix)-1]
	}
	if len(prefix) == 0 {
		return strings.Join(sorted, ", ")
	}
	p := strings.Join(prefix, "/") + "/"
	rest := make([]string, len(sorted))
	for i, t := range sorted {
		rest[i] = strings.TrimPrefix(t, p)
	}
	return p + "{" + strings.Join(rest, ",") + "}"
}

// ---------------------------------------------------------------------------
// skip reasons

// sources resolves the "file.go:NN" of log entries to source lines.
type sources struct {
	root, module string
	byBase       map[string][]string // base name -> paths under root
	lines        map[string][]string // path -> lines
}

func newSources(root string) *sources {
	s := &sources{root: root, lines: map[string][]string{}}
	if b, err := os.ReadFile(filepath.Join(root, "go.mod")); err == nil {
		if m := regexp.MustCompile(`(?m)^module\s+(\S+)`).FindSubmatch(b); m != nil {
			s.module = string(m[1])
		}
	}
	return s
}

// short trims the module path: "github.com/x/y/tests/e2e" -> "tests/e2e".
func (s *sources) short(pkg string) string {
	if s.module != "" {
		if rest, ok := strings.CutPrefix(pkg, s.module+"/"); ok {
			return rest
		}
	}
	return pkg
}

var logRE = regexp.MustCompile(`^(\s+)([\w.-]+\.go):(\d+): (.*)$`)

type logEntry struct {
	file   string
	line   int
	text   []string
	indent int
}

// reason picks the skip message out of a skipped test's output.
func (s *sources) reason(pkg string, output []string) string {
	var entries []*logEntry
	var cur *logEntry
	for _, o := range output {
		for _, l := range strings.Split(strings.TrimRight(o, "\n"), "\n") {
			trim := strings.TrimSpace(l)
			if trim == "" || markerRE.MatchString(l) || strings.HasPrefix(trim, "--- ") {
				cur = nil
				continue
			}
			if m := logRE.FindStringSubmatch(l); m != nil {
				n, _ := strconv.Atoi(m[3])
				cur = &logEntry{file: m[2], line: n, text: []string{m[4]}, indent: len(m[1])}
				entries = append(entries, cur)
				continue
			}
			if cur != nil && len(l)-len(strings.TrimLeft(l, " \t")) > cur.indent {
				cur.text = append(cur.text, trim) // continuation of a multi-line message
				continue
			}
			cur = &logEntry{text: []string{trim}} // printed by the test itself
			entries = append(entries, cur)
		}
	}
	if len(entries) == 0 {
		return "(no reason given)"
	}
	// The entry whose source line calls Skip; failing that, the last one not
	// written by a Log/Error call (a helper that skips is reported at its
	// caller's line when it calls t.Helper); failing that, the last one.
	var skipE, otherE *logEntry
	for _, e := range entries {
		switch s.kind(pkg, e) {
		case "skip":
			skipE = e
		case "other":
			otherE = e
		}
	}
	pick := entries[len(entries)-1]
	if skipE != nil {
		pick = skipE
	} else if otherE != nil {
		pick = otherE
	}
	return strings.Join(pick.text, " ")
}

var (
	skipCallRE = regexp.MustCompile(`\.Skip(f|Now)?\(`)
	logCallRE  = regexp.MustCompile(`\.(Log|Logf|Error|Errorf|Fatal|Fatalf)\(`)
)

// kind is "skip" when the entry's source line (or one of the two before it,
// for a call spread over lines) calls Skip, "log" when it calls Log, Error or
// Fatal, "other" otherwise (a helper's caller, or an unknown file).
func (s *sources) kind(pkg string, e *logEntry) string {
	if e.file == "" {
		return "log"
	}
	lines := s.fileLines(pkg, e.file)
	if e.line < 1 || e.line > len(lines) {
		return "other"
	}
	at := lines[e.line-1]
	if skipCallRE.MatchString(at) {
		return "skip"
	}
	if logCallRE.MatchString(at) {
		return "log"
	}
	for i := e.line - 2; i >= 0 && i >= e.line-3; i-- {
		if skipCallRE.MatchString(lines[i]) {
			return "skip"
		}
	}
	return "other"
}

// fileLines finds base in the package's directory, else anywhere in the
// module (a helper package's file), and returns its lines.
func (s *sources) fileLines(pkg, base string) []string {
	dir := pkg
	if pkg == s.module {
		dir = "."
	}
	path := filepath.Join(s.root, filepath.FromSlash(dir), base)
	if _, err := os.Stat(path); err != nil {
		path = ""
		for _, p := range s.find(base) {
			path = p
			break
		}
	}
	if path == "" {
		return nil
	}
	if l, ok := s.lines[path]; ok {
		return l
	}
	b, _ := os.ReadFile(path)
	l := strings.Split(string(b), "\n")
	s.lines[path] = l
	return l
}

func (s *sources) find(base string) []string {
	if s.byBase == nil {
		s.byBase = map[string][]string{}
		_ = filepath.WalkDir(s.root, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			name := d.Name()
			if d.IsDir() && p != s.root && (strings.HasPrefix(name, ".") || name == "node_modules" || name == "dist" || name == "bin") {
				return filepath.SkipDir
			}
			if !d.IsDir() && strings.HasSuffix(name, ".go") {
				s.byBase[name] = append(s.byBase[name], p)
			}
			return nil
		})
	}
	return s.byBase[base]
}
