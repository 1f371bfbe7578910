package main

import (
	"fmt"
	"io"
	"os"
	"sync"
)

// serverTB is the testing.TB-like value StartTestServer wants, for a program that is not a test:
// logs go to the server log, cleanups run at exit, and a fatal error ends the process.
type serverTB struct {
	mu       sync.Mutex
	log      io.Writer
	cleanups []func()
	failed   bool
}

func newServerTB(log io.Writer) *serverTB { return &serverTB{log: log} }

func (t *serverTB) logf(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.log, format+"\n", args...)
}

func (t *serverTB) runCleanups() {
	t.mu.Lock()
	cs := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}

func (t *serverTB) Attr(key, value string)    {}
func (t *serverTB) Chdir(dir string)          { _ = os.Chdir(dir) }
func (t *serverTB) Cleanup(f func())          { t.mu.Lock(); t.cleanups = append(t.cleanups, f); t.mu.Unlock() }
func (t *serverTB) Error(args ...any)         { t.logf("ERROR: %s", fmt.Sprint(args...)); t.Fail() }
func (t *serverTB) Errorf(f string, a ...any) { t.logf("ERROR: "+f, a...); t.Fail() }
func (t *serverTB) Fail()                     { t.mu.Lock(); t.failed = true; t.mu.Unlock() }
func (t *serverTB) Failed() bool              { t.mu.Lock(); defer t.mu.Unlock(); return t.failed }
func (t *serverTB) Fatal(args ...any)         { t.fatal(fmt.Sprint(args...)) }
func (t *serverTB) Fatalf(f string, a ...any) { t.fatal(fmt.Sprintf(f, a...)) }
func (t *serverTB) FailNow()                  { t.fatal("FailNow") }
func (t *serverTB) Helper()                   {}
func (t *serverTB) Log(args ...any)           { t.logf("%s", fmt.Sprint(args...)) }
func (t *serverTB) Logf(f string, a ...any)   { t.logf(f, a...) }
func (t *serverTB) Name() string              { return "kube-test-server" }
func (t *serverTB) Setenv(key, value string)  { _ = os.Setenv(key, value) }
func (t *serverTB) Skip(args ...any)          { t.fatal("skip: " + fmt.Sprint(args...)) }
func (t *serverTB) Skipf(f string, a ...any)  { t.fatal("skip: " + fmt.Sprintf(f, a...)) }
func (t *serverTB) SkipNow()                  { t.fatal("SkipNow") }
func (t *serverTB) Skipped() bool             { return false }
func (t *serverTB) TempDir() string {
	d, err := os.MkdirTemp("", "kube-test-server")
	if err != nil {
		t.fatal(err.Error())
	}
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}

// fatal mirrors t.Fatal: the server cannot go on, so the process says why and exits.
func (t *serverTB) fatal(msg string) {
	t.logf("FATAL: %s", msg)
	fmt.Fprintf(os.Stderr, "kube-test-server: %s\n", msg)
	t.runCleanups()
	os.Exit(1)
}
