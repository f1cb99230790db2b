//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// countLine matches the suite's summary lines such as "  FAIL..........:  0".
var countLine = regexp.MustCompile(`^\s+(Disabled|Skip|Pass|FAIL|Error|Total)\.*:\s+(\d+)\s*$`)

// TestConformance runs the OCI distribution-spec conformance suite (pull,
// push, content discovery, content management) against localdev and asserts
// no failures and no errors. The report directory is kept and printed.
func TestConformance(t *testing.T) {
	t.Parallel()
	runConformance(t, startRegistry(t, registryOpts{}), nil)
}

// TestConformanceAuth runs the suite again with authentication on: every
// request goes through the Bearer challenge and the token endpoint (the
// suite logs in with HTTP Basic as the admin).
func TestConformanceAuth(t *testing.T) {
	t.Parallel()
	const pw = "conformance-admin-password"
	reg := startRegistry(t, registryOpts{Config: defaultConfig + "auth:\n  adminPasswordEnv: AIRLOCK_E2E_CONFORMANCE_PW\n",
		Env: []string{"AIRLOCK_E2E_CONFORMANCE_PW=" + pw}})
	runConformance(t, reg, []string{"OCI_USERNAME=admin", "OCI_PASSWORD=" + pw})
}

// runConformance runs the conformance suite against reg with extra
// environment and asserts no failure and no error.
func runConformance(t *testing.T, reg *registry, extra []string) {
	bin := tool(t, "conformance")

	results := os.Getenv("AIRLOCK_E2E_RESULTS")
	if results == "" {
		var err error
		if results, err = os.MkdirTemp("", "airlock-conformance-"); err != nil {
			t.Fatal(err)
		}
	} else {
		results = filepath.Join(results, "conformance", t.Name())
	}
	// The suite reads ./oci-conformance.yaml when present: run it in an empty dir.
	work := t.TempDir()
	env := []string{
		"OCI_REGISTRY=" + reg.Host,
		"OCI_TLS=disabled",
		"OCI_VERSION=1.1",
		// The legacy OCI_NAMESPACE / OCI_CROSSMOUNT_NAMESPACE of the older suite:
		"OCI_REPO1=local/conformance/a",
		"OCI_REPO2=local/conformance/b",
		// The legacy OCI_TEST_PULL/PUSH/CONTENT_DISCOVERY/CONTENT_MANAGEMENT=1:
		"OCI_API_PULL=true",
		"OCI_API_PUSH=true",
		"OCI_API_TAGS_LIST=true",
		"OCI_API_REFERRER=true",
		"OCI_API_TAGS_DELETE=true",
		"OCI_API_MANIFESTS_DELETE=true",
		"OCI_API_BLOBS_DELETE=true",
		"OCI_API_BLOBS_UPLOAD_CANCEL=true", // off by default in the suite; Airlock supports it
		"OCI_RESULTS_DIR=" + results,
		"OCI_LOG=warn",
	}
	env = append(env, extra...)
	out, elapsed, runErr := execIn(work, 8*time.Minute, env, bin)
	if err := os.WriteFile(filepath.Join(results, "conformance.log"), []byte(out), 0o644); err != nil {
		t.Logf("write conformance.log: %v", err)
	}

	counts := map[string]int{}
	resultLine := ""
	var failed []string
	inFailure := false
	for _, line := range strings.Split(out, "\n") {
		if m := countLine.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[2])
			counts[m[1]] = n
		}
		if strings.HasPrefix(line, "OCI Conformance Result:") {
			resultLine = line
		}
		// Status lines end in ": <status>"; "- reason" lines belong to the one above.
		switch {
		case strings.HasSuffix(line, ": FAIL") || strings.HasSuffix(line, ": Error"):
			inFailure = true
			failed = append(failed, line)
		case strings.HasPrefix(strings.TrimSpace(line), "- "):
			if inFailure {
				failed = append(failed, line)
			}
		default:
			inFailure = false
		}
	}
	summary := out
	if i := strings.Index(out, "OCI Conformance Result:"); i >= 0 {
		summary = out[i:]
	}
	t.Logf("conformance suite ran in %s; report dir %s (results.yaml, junit.xml, report.html, conformance.log)", elapsed, results)
	t.Logf("summary:\n%s", summary)
	if len(failed) > 0 {
		if len(failed) > 200 {
			failed = append(failed[:200], fmt.Sprintf("... %d more in conformance.log", len(failed)-200))
		}
		t.Logf("failing steps:\n%s", strings.Join(failed, "\n"))
	}
	t.Logf("RESULT: %s (pass %d, fail %d, error %d, skip %d, disabled %d, total %d) in %s",
		resultLine, counts["Pass"], counts["FAIL"], counts["Error"], counts["Skip"], counts["Disabled"], counts["Total"], elapsed)

	if resultLine == "" {
		t.Fatalf("no result line from the suite (err %v); output:\n%s", runErr, tail(out, 80))
	}
	if counts["FAIL"] != 0 || counts["Error"] != 0 {
		t.Fatalf("conformance: %d failures, %d errors (%s)", counts["FAIL"], counts["Error"], resultLine)
	}
	if counts["Pass"] == 0 {
		t.Fatalf("conformance: nothing passed (%s)", resultLine)
	}
	if runErr != nil {
		t.Fatalf("conformance exited with %v although no failure was counted", runErr)
	}
	for _, f := range []string{"results.yaml", "junit.xml", "report.html"} {
		if _, err := os.Stat(filepath.Join(results, f)); err != nil {
			t.Errorf("report %s missing: %v", f, err)
		}
	}
}
