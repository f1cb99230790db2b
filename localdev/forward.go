package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
)

// forward listens on addr (host:port) and relays every connection to the
// emulator at endpoint (http://host:port), so that the emulators can be
// reached at fixed ports (-dynamo-addr, -s3-addr; localdev/sam-env.json)
// although the harness starts them on free ones. SigV4 signatures (also of
// presigned URLs) cover the Host header the client sent, which the relay
// leaves untouched. It returns the new endpoint; the relay stops with ctx.
func forward(ctx context.Context, addr, endpoint string, log *slog.Logger) (string, error) {
	target := strings.TrimPrefix(endpoint, "http://")
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("listen %s: %w", addr, err)
	}
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go relay(c, target, log)
		}
	}()
	return "http://" + l.Addr().String(), nil
}

// relay copies bytes both ways between c and a new connection to target.
func relay(c net.Conn, target string, log *slog.Logger) {
	defer c.Close()
	up, err := net.Dial("tcp", target)
	if err != nil {
		log.Warn("forward: dial emulator", "target", target, "err", err)
		return
	}
	defer up.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}
	go pipe(up, c)
	go pipe(c, up)
	wg.Wait()
}
