package lambda_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/airlock-registry/airlock/localdev/harness"
	"github.com/airlock-registry/airlock/shared/purge"
	"github.com/airlock-registry/airlock/shared/storage/s3store"
)

// purgeImage is where the purge test keeps a young blob and an open session.
const purgeImage = "local/lambda/purge"

// emfLine is what the purge prints per report: a CloudWatch embedded metric
// format document (the metrics CloudWatch Logs extracts from stdout).
type emfLine struct {
	AWS struct {
		Timestamp         int64 `json:"Timestamp"`
		CloudWatchMetrics []struct {
			Namespace  string     `json:"Namespace"`
			Dimensions [][]string `json:"Dimensions"`
			Metrics    []struct {
				Name string `json:"Name"`
			} `json:"Metrics"`
		} `json:"CloudWatchMetrics"`
	} `json:"_aws"`
	Task    string `json:"Task"`
	DryRun  string `json:"DryRun"`
	Deleted *int   `json:"Deleted"`
}

// emfLines returns the EMF documents in out (one JSON object a line).
func emfLines(out string) []emfLine {
	var docs []emfLine
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l emfLine
		if !strings.HasPrefix(sc.Text(), "{") || json.Unmarshal(sc.Bytes(), &l) != nil || len(l.AWS.CloudWatchMetrics) == 0 {
			continue
		}
		docs = append(docs, l)
	}
	return docs
}

// invokePurge sends event to the purge function and returns its reports
// and the EMF lines it printed meanwhile. The emulator copies the
// function's stdout and stderr (the JSON log) as they come, both onto its
// own stdout, as Lambda sends both to CloudWatch Logs: the lines are waited
// for, at most 10 s, until there is one per report.
func invokePurge(t *testing.T, fn *function, event string) ([]purge.Report, []emfLine) {
	t.Helper()
	from := len(fn.out.String())
	r := fn.invokeRaw(t, []byte(event))
	var reports []purge.Report
	if r.invokeStatus != http.StatusOK || json.Unmarshal(r.raw, &reports) != nil {
		t.Fatalf("purge %s: HTTP %d %.1000s\npurge output:\n%s", event, r.invokeStatus, r.raw, tail(fn.out.String(), 2000))
	}
	for _, rep := range reports {
		t.Logf("%s (dry run %v): considered %d, deleted %d, skipped %v, more %v", rep.Task, rep.DryRun, rep.Considered, rep.Count, rep.Skipped, rep.More)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		lines := emfLines(fn.out.String()[from:])
		if len(lines) >= len(reports) || time.Now().After(deadline) {
			return reports, lines
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkEMF checks one EMF document per report, in order, each naming the
// Airlock/Purge namespace, the Task and DryRun dimensions and the report's
// counts.
func checkEMF(t *testing.T, reports []purge.Report, lines []emfLine, out string) {
	t.Helper()
	if len(lines) != len(reports) {
		t.Fatalf("%d EMF lines on the function's stdout for %d reports:\n%s", len(lines), len(reports), tail(out, 3000))
	}
	for i, l := range lines {
		r := reports[i]
		m := l.AWS.CloudWatchMetrics[0]
		dry := map[bool]string{true: "true", false: "false"}[r.DryRun]
		if m.Namespace != "Airlock/Purge" || len(m.Dimensions) != 1 || strings.Join(m.Dimensions[0], ",") != "Task,DryRun" ||
			l.Task != r.Task || l.DryRun != dry || l.Deleted == nil || *l.Deleted != r.Count || l.AWS.Timestamp != r.Start.UnixMilli() {
			t.Fatalf("EMF line %d %+v does not match report %+v", i, l, r)
		}
		var names []string
		for _, x := range m.Metrics {
			names = append(names, x.Name)
		}
		if strings.Join(names, ",") != "Deleted,BytesFreed,Considered,Errors,More" {
			t.Fatalf("EMF line %d: metrics %v", i, names)
		}
	}
}

// reportItems returns every item a run deleted (a dry run: would delete):
// its report lists the first purge.ReportSample, the object it names in
// the suite's bucket (JSON lines of items, gzip) all of them.
func reportItems(t *testing.T, r purge.Report) []purge.Item {
	t.Helper()
	if r.List == "" {
		if r.Count != 0 {
			t.Fatalf("%s: %d deleted and no list", r.Task, r.Count)
		}
		return nil
	}
	ctx := context.Background()
	s3c, err := s3store.NewClient(ctx, s3store.Options{Endpoint: suite.s3.Endpoint, Region: harness.Region,
		AccessKey: harness.AccessKey, SecretKey: harness.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s3store.New(s3c, harness.Bucket).ReadObject(ctx, r.List)
	if err != nil {
		t.Fatalf("%s: read the list %s: %v", r.Task, r.List, err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: list %s: %v", r.Task, r.List, err)
	}
	var out []purge.Item
	for dec := json.NewDecoder(zr); ; {
		var it purge.Item
		if err := dec.Decode(&it); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: list %s: %v", r.Task, r.List, err)
		}
		out = append(out, it)
	}
	if len(out) != r.Count {
		t.Fatalf("%s: the report counts %d deleted, its list %s holds %d", r.Task, r.Count, r.List, len(out))
	}
	return out
}

// TestPurgeFunction runs functions/purge under the emulator over the
// suite's table and bucket: one task by hand (dry and real), the
// EventBridge schedule's event (every task, for real) and an unknown task;
// the young blob and the open session of this test survive every run.
func TestPurgeFunction(t *testing.T) {
	fn := startNamed(t, "purge", "AWS_LAMBDA_FUNCTION_NAME=PurgeFunction", "AWS_LAMBDA_FUNCTION_TIMEOUT=900", "LOG_LEVEL=info")
	young := pushMonolithic(t, purgeImage, randBytes(4<<10)) // unreferenced, within blobGrace
	session, _ := suite.fn.startUpload(t, purgeImage)        // open, within incompleteUploadsAfter
	notDeleted := func(t *testing.T, reports []purge.Report) {
		t.Helper()
		for _, r := range reports {
			for _, it := range reportItems(t, r) {
				if it.ID == young.String() || it.ID == session[strings.LastIndex(session, "/")+1:] || strings.Contains(strings.Join(it.Keys, " "), young.Encoded()) {
					t.Fatalf("%s (dry run %v) deleted %+v: this test's young blob or open session", r.Task, r.DryRun, it)
				}
			}
			if len(r.Errors) > 0 {
				t.Fatalf("%s: errors %v", r.Task, r.Errors)
			}
		}
	}

	t.Run("blob-gc dry run", func(t *testing.T) {
		reports, lines := invokePurge(t, fn, `{"task":"blob-gc","dryRun":true}`)
		if len(reports) != 1 || reports[0].Task != purge.TaskBlobGC || !reports[0].DryRun {
			t.Fatalf("reports %+v, want one blob-gc dry run", reports)
		}
		if r := reports[0]; r.Considered == 0 || r.Skipped["young"] == 0 {
			t.Fatalf("blob-gc considered %d, skipped %v: want this test's young blob among the young", r.Considered, r.Skipped)
		}
		notDeleted(t, reports)
		checkEMF(t, reports, lines, fn.out.String())
	})

	t.Run("incomplete-uploads", func(t *testing.T) {
		reports, lines := invokePurge(t, fn, `{"task":"incomplete-uploads","dryRun":false}`)
		if len(reports) != 1 || reports[0].Task != purge.TaskIncompleteUploads || reports[0].DryRun {
			t.Fatalf("reports %+v, want one real incomplete-uploads run", reports)
		}
		notDeleted(t, reports)
		checkEMF(t, reports, lines, fn.out.String())
	})

	t.Run("schedule", func(t *testing.T) {
		reports, lines := invokePurge(t, fn, string(testdataEvent(t, "eventbridge-scheduled-event.json")))
		var tasks []string
		for _, r := range reports {
			if r.DryRun {
				t.Errorf("the schedule's %s ran dry", r.Task)
			}
			tasks = append(tasks, r.Task)
		}
		if strings.Join(tasks, ",") != strings.Join(purge.Tasks(), ",") {
			t.Fatalf("the scheduled event ran %v, want every task for real: %v", tasks, purge.Tasks())
		}
		notDeleted(t, reports)
		checkEMF(t, reports, lines, fn.out.String())
	})

	t.Run("unknown task", func(t *testing.T) {
		r := fn.invokeRaw(t, []byte(`{"task":"blob-gcc","dryRun":true}`))
		if !strings.Contains(r.ErrorMessage, `unknown purge task "blob-gcc"`) || !strings.Contains(r.ErrorMessage, purge.TaskBlobGC) {
			t.Fatalf("unknown task: HTTP %d %s, want a function error naming the tasks", r.invokeStatus, r.raw)
		}
	})

	// What the runs kept is still served.
	head := do(t, request{method: "HEAD", target: "/v2/" + purgeImage + "/blobs/" + young.String()})
	wantStatus(t, "HEAD young blob after the purge", head, http.StatusOK)
	st := do(t, request{method: "GET", target: session})
	wantStatus(t, "GET open session after the purge", st, http.StatusNoContent)
}
