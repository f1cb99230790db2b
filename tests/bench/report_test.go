//go:build bench

package bench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// report collects the benchmark's table, section by section.
type report struct {
	mu       sync.Mutex
	sections []*section
}

// section is one titled table with notes under it.
type section struct {
	title  string
	header []string
	rows   [][]string
	notes  []string
}

func (r *report) section(title string, header ...string) *section {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &section{title: title, header: header}
	r.sections = append(r.sections, s)
	return s
}

func (s *section) row(cells ...string) { s.rows = append(s.rows, cells) }

func (s *section) note(format string, args ...any) {
	s.notes = append(s.notes, fmt.Sprintf(format, args...))
}

// write renders every section as aligned columns.
func (r *report) write(w io.Writer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.sections {
		fmt.Fprintf(w, "\n== %s ==\n", s.title)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(s.header, "\t"))
		for _, row := range s.rows {
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		tw.Flush()
		for _, n := range s.notes {
			fmt.Fprintf(w, "  * %s\n", n)
		}
	}
}

// calls is one operation's AWS requests, classified.
type calls struct {
	ddbR, ddbW, ddbOther, s3 int
	ops                      map[string]int
}

var ddbReads = map[string]bool{"GetItem": true, "BatchGetItem": true, "Query": true, "Scan": true, "TransactGetItems": true}
var ddbWrites = map[string]bool{"PutItem": true, "UpdateItem": true, "DeleteItem": true, "BatchWriteItem": true, "TransactWriteItems": true}

// classify sorts an awscount snapshot into DynamoDB reads, writes and S3 calls.
func classify(snap map[string]int) calls {
	c := calls{ops: snap}
	for k, n := range snap {
		svc, op, _ := strings.Cut(k, ".")
		switch {
		case svc == "DynamoDB" && ddbReads[op]:
			c.ddbR += n
		case svc == "DynamoDB" && ddbWrites[op]:
			c.ddbW += n
		case svc == "DynamoDB":
			c.ddbOther += n
		case svc == "S3":
			c.s3 += n
		}
	}
	return c
}

// add sums two operations' calls.
func (c calls) add(o calls) calls {
	sum := calls{ddbR: c.ddbR + o.ddbR, ddbW: c.ddbW + o.ddbW, ddbOther: c.ddbOther + o.ddbOther, s3: c.s3 + o.s3, ops: map[string]int{}}
	for k, n := range c.ops {
		sum.ops[k] += n
	}
	for k, n := range o.ops {
		sum.ops[k] += n
	}
	return sum
}

// detail lists the operations as "GetItem×2 UploadPart×3".
func (c calls) detail(svc string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c.ops)) {
		if s, op, _ := strings.Cut(k, "."); s == svc {
			parts = append(parts, fmt.Sprintf("%s×%d", short(op), c.ops[k]))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

// short abbreviates long operation names for the table.
func short(op string) string {
	switch op {
	case "CreateMultipartUpload":
		return "CreateMPU"
	case "CompleteMultipartUpload":
		return "CompleteMPU"
	case "AbortMultipartUpload":
		return "AbortMPU"
	}
	op = strings.TrimSuffix(op, "Item")
	return strings.TrimSuffix(op, "Object")
}

// secs formats a duration in seconds.
func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// rate formats bytes per duration as MiB/s.
func rate(n int64, d time.Duration) string {
	return fmt.Sprintf("%.0f MiB/s", float64(n)/(1<<20)/d.Seconds())
}

// ratio formats a/b as "1.23×".
func ratio(a, b float64) string { return fmt.Sprintf("%.2f×", a/b) }

// verdict is "ok" or "MISSED".
func verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISSED"
}
