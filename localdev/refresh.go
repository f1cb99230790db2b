package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// refreshCmd is `localdev refresh <proxy>/<image>:<tag>`: it asks a running
// localdev (the admin API) to revalidate one cached tag now.
func refreshCmd(args []string) int {
	fs := flag.NewFlagSet("refresh", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:5000", "address of the running localdev")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: localdev refresh [-addr 127.0.0.1:5000] <proxy>/<image>:<tag>")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	ref := fs.Arg(0)
	i := strings.LastIndex(ref, ":")
	proxy, image, ok := strings.Cut(ref[:max(i, 0)], "/")
	if i < 0 || !ok || image == "" {
		fmt.Fprintf(os.Stderr, "localdev refresh: %q: want <proxy>/<image>:<tag>, e.g. hub/library/alpine:latest\n", ref)
		return 2
	}
	u := fmt.Sprintf("http://%s/airlock/api/proxies/%s/refresh?%s", *addr, url.PathEscape(proxy), url.Values{"name": {image}, "tag": {ref[i+1:]}}.Encode())
	c := &http.Client{Timeout: time.Minute}
	resp, err := c.Post(u, "", nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "localdev refresh: %v (is localdev running on %s?)\n", err, *addr)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	fmt.Println(strings.TrimSpace(string(body)))
	if resp.StatusCode != http.StatusOK {
		return 1
	}
	return 0
}
