package registry_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/airlock-registry/airlock/shared/purge"
	"github.com/airlock-registry/airlock/shared/storage"
)

// TestAdminPurge: POST /airlock/api/purge runs a task as a dry run (the
// default) or for real, answers the report, and needs the admin role.
func TestAdminPurge(t *testing.T) {
	e := newAuthEnv(t)
	ctx := t.Context()
	now := e.clock.Now()
	u := storage.Upload{ID: "old", Image: storage.Image{Repo: "local", Name: "team-a/app"}, Created: now, ExpiresAt: now.Add(72 * time.Hour)}
	if err := e.reg.Meta.CreateUpload(ctx, u); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(48 * time.Hour)
	call := func(method, query, user string) (int, purge.Report) {
		req, _ := http.NewRequest(method, e.srv.URL+"/airlock/api/purge"+query, nil)
		if user != "" {
			req.SetBasicAuth(user, user+"-password-1234")
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		var r purge.Report
		if res.StatusCode == http.StatusOK {
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatalf("report %s: %v", b, err)
			}
		}
		return res.StatusCode, r
	}
	for _, tc := range []struct {
		method, query, user string
		want                int
	}{
		{http.MethodPost, "?task=incomplete-uploads&dryRun=false", "alice", http.StatusForbidden},
		{http.MethodPost, "?task=incomplete-uploads&dryRun=false", "", http.StatusUnauthorized},
		{http.MethodGet, "?task=incomplete-uploads", "admin", http.StatusMethodNotAllowed},
		{http.MethodPost, "?task=nope", "admin", http.StatusBadRequest},
		{http.MethodPost, "?task=incomplete-uploads&dryRun=maybe", "admin", http.StatusBadRequest},
		{http.MethodPost, "?task=incomplete-uploads&dryRun=false&dryRun=true", "admin", http.StatusBadRequest},
		{http.MethodPost, "?task=incomplete-uploads&dryRun=true&dryRun=false", "admin", http.StatusBadRequest},
		{http.MethodPost, "?task=blob-gc&task=incomplete-uploads&dryRun=false", "admin", http.StatusBadRequest},
	} {
		if got, _ := call(tc.method, tc.query, tc.user); got != tc.want {
			t.Errorf("%s %s as %q: %d, want %d", tc.method, tc.query, tc.user, got, tc.want)
		}
	}
	if _, err := e.reg.Meta.GetUpload(ctx, "old"); err != nil {
		t.Fatalf("refused calls deleted the session: %v", err)
	}
	for _, q := range []string{"?task=incomplete-uploads", "?task=incomplete-uploads&dryRun=true"} {
		st, r := call(http.MethodPost, q, "admin")
		if st != http.StatusOK || !r.DryRun || len(r.Deleted) != 1 || r.Deleted[0].ID != "old" {
			t.Fatalf("dry run %s: %d %+v", q, st, r)
		}
	}
	if _, err := e.reg.Meta.GetUpload(ctx, "old"); err != nil {
		t.Fatalf("dry run deleted the session: %v", err)
	}
	st, r := call(http.MethodPost, "?task=incomplete-uploads&dryRun=false", "admin")
	if st != http.StatusOK || r.DryRun || len(r.Deleted) != 1 || r.Deleted[0].ID != "old" || r.Task != "incomplete-uploads" ||
		r.Count != 1 || r.Listed != "1 of 1" || !strings.HasPrefix(r.List, "purge/reports/"+r.Pass+"/incomplete-uploads-") {
		t.Fatalf("real run: %d %+v", st, r)
	}
	if _, err := e.reg.Meta.GetUpload(ctx, "old"); err == nil {
		t.Fatal("real run left the session")
	}
}
