package purge

import (
	"encoding/json"
	"io"
)

// metricsNamespace is the CloudWatch namespace of the purge's metrics.
const metricsNamespace = "Airlock/Purge"

// writeEMF writes one CloudWatch embedded metric format document for a
// report: CloudWatch Logs turns the line the purge function prints into the
// metrics Deleted, BytesFreed, Considered, Errors and More (dimension Task,
// plus DryRun), with no PutMetricData call and no extra permission.
func writeEMF(w io.Writer, r Report) error {
	kinds := r.Kinds
	if kinds == nil {
		kinds = map[string]int{}
	}
	dry := "false"
	if r.DryRun {
		dry = "true"
	}
	more := 0
	if r.More {
		more = 1
	}
	doc := map[string]any{
		"_aws": map[string]any{
			"Timestamp": r.Start.UnixMilli(),
			"CloudWatchMetrics": []any{map[string]any{
				"Namespace":  metricsNamespace,
				"Dimensions": [][]string{{"Task", "DryRun"}},
				"Metrics": []map[string]string{
					{"Name": "Deleted", "Unit": "Count"},
					{"Name": "BytesFreed", "Unit": "Bytes"},
					{"Name": "Considered", "Unit": "Count"},
					{"Name": "Errors", "Unit": "Count"},
					{"Name": "More", "Unit": "Count"},
				},
			}},
		},
		"Task":          r.Task,
		"DryRun":        dry,
		"Deleted":       r.Count,
		"BytesFreed":    r.Bytes,
		"Considered":    r.Considered,
		"Errors":        len(r.Errors),
		"More":          more,
		"DeletedByKind": kinds,
		"Took":          r.Took,
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
