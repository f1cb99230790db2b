package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// refreshCmd is `localdev refresh <proxy>/<image>:<tag>`: it asks a running
// localdev (the admin API) to revalidate one cached tag now. With auth on,
// -u names the admin's credentials (HTTP Basic, as curl -u).
func refreshCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("refresh", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:5000", "address of the running localdev")
	cred := fs.String("u", "", "user:password of an admin, when auth is on (e.g. admin:$(cat .localdev/admin.password))")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: localdev refresh [-addr 127.0.0.1:5000] [-u admin:<password>] <proxy>/<image>:<tag>")
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
		fmt.Fprintf(stderr, "localdev refresh: %q: want <proxy>/<image>:<tag>, e.g. hub/library/alpine:latest\n", ref)
		return 2
	}
	u := fmt.Sprintf("http://%s/airlock/api/proxies/%s/refresh?%s", *addr, url.PathEscape(proxy), url.Values{"name": {image}, "tag": {ref[i+1:]}}.Encode())
	req, err := http.NewRequest(http.MethodPost, u, nil)
	if err != nil {
		fmt.Fprintf(stderr, "localdev refresh: %v\n", err)
		return 2
	}
	if *cred != "" {
		user, pass, ok := strings.Cut(*cred, ":")
		if !ok || user == "" {
			fmt.Fprintln(stderr, "localdev refresh: -u wants user:password")
			return 2
		}
		req.SetBasicAuth(user, pass)
	}
	c := &http.Client{Timeout: time.Minute}
	resp, err := c.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "localdev refresh: %v (is localdev running on %s?)\n", err, *addr)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	fmt.Fprintln(stdout, strings.TrimSpace(string(body)))
	if resp.StatusCode == http.StatusUnauthorized && *cred == "" {
		fmt.Fprintln(stderr, "localdev refresh: auth is on: give an admin's credentials, -u admin:<password> (localdev wrote the password to admin.password in its -data folder)")
	}
	if resp.StatusCode != http.StatusOK {
		return 1
	}
	return 0
}
