package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// stream renders events as go test -json writes them.
func stream(t *testing.T, events ...event) string {
	t.Helper()
	var b bytes.Buffer
	for _, e := range events {
		j, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

const pkg = "example.com/m/tests/e2e"

func out(test, text string) event {
	return event{Action: "output", Package: pkg, Test: test, Output: text}
}
func res(test, action string) event { return event{Action: action, Package: pkg, Test: test} }

// A skipped subtest whose parent's helper started a registry (logged), a
// skip through a t.Helper helper followed by a cleanup's log, a parallel
// subtest group skipped with one reason, a skip with no message, a failure.
func fixture(t *testing.T) string {
	return stream(t,
		event{Action: "start", Package: pkg},
		out("TestDocker", "=== RUN   TestDocker\n"),
		out("TestDocker", "    docker_test.go:3: localdev ready\n"),
		out("TestDocker", "    docker_test.go:4: dockerd not installed (apt-get install docker.io): exec: \"dockerd\": executable file not found in $PATH\n"),
		out("TestDocker", "    docker_test.go:9: localdev stopped in 4ms\n"),
		out("TestDocker", "--- SKIP: TestDocker (0.01s)\n"),
		res("TestDocker", "skip"),
		out("TestStore", "=== RUN   TestStore\n"),
		out("TestStore/a", "=== RUN   TestStore/a\n"),
		out("TestStore/b", "=== RUN   TestStore/b\n"),
		out("TestStore/c", "=== RUN   TestStore/c\n"),
		out("TestStore/d", "=== RUN   TestStore/d\n"),
		out("TestStore/d", "    store_test.go:2: *s3store.Store does not implement\n"),
		out("TestStore/d", "        storage.ChunkStager\n"),
		res("TestStore/d", "skip"),
		out("TestStore/a", "    store_test.go:2: *s3store.Store does not implement\n"),
		out("TestStore/a", "        storage.ChunkStager\n"),
		res("TestStore/a", "skip"),
		out("TestStore/b", "    store_test.go:2: *s3store.Store does not implement\n"),
		out("TestStore/b", "        storage.ChunkStager\n"),
		res("TestStore/b", "skip"),
		out("TestStore/c", "    store_test.go:2: *s3store.Store does not implement\n"),
		out("TestStore/c", "        storage.ChunkStager\n"),
		res("TestStore/c", "skip"),
		out("TestStore", "--- PASS: TestStore (0.00s)\n"),
		out("TestStore", "    --- SKIP: TestStore/a (0.00s)\n"),
		res("TestStore", "pass"),
		out("TestNow", "=== RUN   TestNow\n--- SKIP: TestNow (0.00s)\n"),
		res("TestNow", "skip"),
		out("TestBad", "=== RUN   TestBad\n"),
		out("TestBad", "    docker_test.go:9: boom\n"),
		out("TestBad", "--- FAIL: TestBad (0.00s)\n"),
		res("TestBad", "fail"),
		event{Action: "output", Package: pkg, Output: "FAIL\n"},
		event{Action: "output", Package: pkg, Output: "FAIL\t" + pkg + "\t0.05s\n"},
		event{Action: "fail", Package: pkg, Elapsed: 0.05},
	)
}

func TestRecordShort(t *testing.T) {
	dir := t.TempDir()
	var console bytes.Buffer
	in := "go: downloading example.com/x v1.0.0\n" + fixture(t)
	if err := record(strings.NewReader(in), &console, filepath.Join(dir, "s.json"), filepath.Join(dir, "s.log"), false); err != nil {
		t.Fatal(err)
	}
	want := "go: downloading example.com/x v1.0.0\n" +
		"    docker_test.go:9: boom\n--- FAIL: TestBad (0.00s)\nFAIL\nFAIL\t" + pkg + "\t0.05s\n"
	if got := console.String(); got != want {
		t.Errorf("console:\n%s\nwant:\n%s", got, want)
	}
	logText, _ := os.ReadFile(filepath.Join(dir, "s.log"))
	if !strings.Contains(string(logText), "=== RUN   TestDocker\n") || !strings.Contains(string(logText), "--- SKIP: TestNow") {
		t.Errorf("log lacks the verbose text:\n%s", logText)
	}
	recorded, _ := os.ReadFile(filepath.Join(dir, "s.json"))
	if strings.Contains(string(recorded), "downloading") || strings.Count(string(recorded), "\n") != strings.Count(fixture(t), "\n") {
		t.Errorf("recorded stream differs from the JSON input:\n%s", recorded)
	}
}

func TestSummary(t *testing.T) {
	root := t.TempDir()
	write := func(name, text string) {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/m\n")
	write("tests/e2e/docker_test.go", "package e2e\nfunc x() {\n\tt.Log(\"localdev ready\")\n\td := startDockerd(t)\n}\n\nfunc y() {\n\tdefer func() {\n\t\tt.Logf(\"stopped\") }()\n}\n")
	write("shared/storagetest/store_test.go", "package storagetest\n\t\tt.Skipf(\"%T does not implement storage.ChunkStager\", s)\n")
	write("dist/unit.json", fixture(t))
	var b bytes.Buffer
	summary(&b, root, filepath.Join(root, "dist", "skipped.txt"), []suiteFile{
		{"test-unit", filepath.Join(root, "dist", "unit.json")},
		{"test-netns", filepath.Join(root, "dist", "netns.json")},
	})
	got := b.String()
	for _, want := range []string{
		"test-unit   1 passed, 1 failed, 6 skipped\n",
		"FAIL tests/e2e TestBad\n",
		"test-netns  not run (no ",
		"skipped: 6\n",
		"    tests/e2e TestDocker: dockerd not installed (apt-get install docker.io): exec: \"dockerd\": executable file not found in $PATH\n",
		"    tests/e2e TestStore/{a,b,c,d} (4 tests): *s3store.Store does not implement storage.ChunkStager\n",
		"    tests/e2e TestNow: (no reason given)\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q:\n%s", want, got)
		}
	}
	list, _ := os.ReadFile(filepath.Join(root, "dist", "skipped.txt"))
	if n := strings.Count(string(list), "\n"); n != 6 {
		t.Errorf("skipped.txt has %d lines, want 6:\n%s", n, list)
	}

	b.Reset()
	write("dist/unit.json", stream(t, res("TestA", "pass"), event{Action: "pass", Package: pkg}))
	summary(&b, root, filepath.Join(root, "dist", "skipped.txt"), []suiteFile{{"test-unit", filepath.Join(root, "dist", "unit.json")}})
	if !strings.Contains(b.String(), "\nno test skipped\n") {
		t.Errorf("summary without skips:\n%s", b.String())
	}
}
