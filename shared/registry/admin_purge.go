package registry

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/airlock-registry/airlock/shared/purge"
)

// adminPurge (POST /airlock/api/purge?task=<name>&dryRun=true|false) runs
// one purge task now and answers its report (package purge). dryRun
// defaults to true: deleting needs dryRun=false. Each parameter is given
// once: a repeated one (dryRun=false&dryRun=true) is ambiguous, so 400.
func (rg *Registry) adminPurge(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return notAllowed(r.Method, r.URL.Path, http.MethodPost)
	}
	q := r.URL.Query()
	for _, k := range []string{"task", "dryRun"} {
		if len(q[k]) > 1 {
			return apiErr(http.StatusBadRequest, CodeUnsupported, "%s is given %d times (%q): give it once", k, len(q[k]), q[k])
		}
	}
	task, dry := q.Get("task"), true
	if v := q.Get("dryRun"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return apiErr(http.StatusBadRequest, CodeUnsupported, "dryRun=%q: want true or false", v)
		}
		dry = b
	}
	p, err := purge.New(purge.Deps{Meta: rg.Meta, Blobs: rg.Blobs, Config: rg.Config, Logger: rg.Logger, Now: rg.PurgeNow})
	if err != nil {
		return err
	}
	rep, err := p.Run(r.Context(), task, dry)
	if errors.Is(err, purge.ErrUnknownTask) {
		return apiErr(http.StatusBadRequest, CodeUnsupported, "%v (?task=)", err)
	}
	if err != nil {
		return err
	}
	writeJSON(w, r, "application/json", rep)
	return nil
}
