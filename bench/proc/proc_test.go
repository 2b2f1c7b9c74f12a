package proc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the child process: with PROC_HELPER set it
// behaves as asked instead of running the tests.
func TestMain(m *testing.M) {
	switch os.Getenv("PROC_HELPER") {
	case "":
		os.Exit(m.Run())
	case "wait-term": // exits 0 on SIGTERM, like the real server
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		fmt.Println("ready")
		<-c
		os.Exit(0)
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ready")
		time.Sleep(time.Minute)
	case "crash":
		fmt.Fprintln(os.Stderr, "starting")
		fmt.Fprintln(os.Stderr, "panic: boom")
		os.Exit(3)
	case "grandchild": // starts a child in its own group and prints its pid
		signal.Ignore(syscall.SIGTERM)
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "PROC_HELPER=ignore-term")
		if err := cmd.Start(); err != nil {
			os.Exit(9)
		}
		fmt.Println(cmd.Process.Pid)
		time.Sleep(time.Minute)
	}
	os.Exit(0)
}

func helper(t *testing.T, kind string, cpus []int, pin *Pinning) (*Proc, *lineWriter) {
	t.Helper()
	out := &lineWriter{lines: make(chan string, 8)}
	p, err := Start(Spec{Name: kind, Path: os.Args[0], Env: []string{"PROC_HELPER=" + kind, "GORACE=atexit_sleep_ms=0"}, Stdout: out, CPUs: cpus}, pin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(time.Second) })
	return p, out
}

// lineWriter hands each line written to it to a channel.
type lineWriter struct {
	lines chan string
	buf   []byte
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.buf = append(w.buf, b...)
	for {
		i := strings.IndexByte(string(w.buf), '\n')
		if i < 0 {
			return len(b), nil
		}
		w.lines <- string(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
}

func (w *lineWriter) next(t *testing.T) string {
	t.Helper()
	select {
	case l := <-w.lines:
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("no output from the helper")
		return ""
	}
}

func TestStopGraceful(t *testing.T) {
	p, out := helper(t, "wait-term", nil, nil)
	out.next(t)
	start := time.Now()
	if err := p.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if p.Err() != nil || p.Unexpected() {
		t.Errorf("err %v, unexpected %v", p.Err(), p.Unexpected())
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("graceful stop took %s", d)
	}
}

func TestStopKillsAfterGrace(t *testing.T) {
	p, out := helper(t, "ignore-term", nil, nil)
	out.next(t)
	if err := p.Stop(100 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	var ee *exec.ExitError
	if err := p.Err(); !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("want killed by SIGKILL, got %v", err)
	}
}

func TestCrashIsUnexpected(t *testing.T) {
	p, _ := helper(t, "crash", nil, nil)
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("helper did not exit")
	}
	if !p.Unexpected() {
		t.Error("a process that exited by itself is not reported as unexpected")
	}
	_ = p.Stop(time.Second)
	if !p.Unexpected() {
		t.Error("Stop after the crash hid it")
	}
	s := p.ExitSummary()
	if !strings.Contains(s, "exit status 3") || !strings.Contains(s, "panic: boom") {
		t.Errorf("summary %q", s)
	}
}

// TestStopReachesTheGroup checks that a child the process started in the
// same group does not outlive Stop.
func TestStopReachesTheGroup(t *testing.T) {
	p, out := helper(t, "grandchild", nil, nil)
	pid, err := strconv.Atoi(out.next(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(50 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		// The grandchild is not ours to reap; once killed it is a zombie
		// of its dead parent, re-parented and reaped by init, or gone.
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(b), ") Z ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d still alive: %s", pid, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPinning(t *testing.T) {
	cpus, err := UsableCPUs()
	if err != nil {
		t.Fatal(err)
	}
	if len(cpus) < 2 {
		t.Skip("one CPU: nothing to pin")
	}
	for _, mode := range []string{ModeTaskset, ModeSchedSetaffinity} {
		t.Run(mode, func(t *testing.T) {
			pin, err := PlanPinning(mode)
			if err != nil {
				t.Skip(err)
			}
			want := cpus[len(cpus)-1:]
			p, out := helper(t, "wait-term", want, pin)
			out.next(t)
			got, err := AllowedCPUs(p.Pid())
			if err != nil {
				t.Fatal(err)
			}
			if got != cpuList(want) {
				t.Errorf("allowed CPUs %q, want %q", got, cpuList(want))
			}
			// Every thread, not only the main one.
			tids, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", p.Pid()))
			for _, tid := range tids {
				b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", p.Pid(), tid.Name()))
				if !strings.Contains(string(b), "Cpus_allowed_list:\t"+cpuList(want)+"\n") {
					t.Errorf("thread %s not pinned", tid.Name())
				}
			}
		})
	}
}

func TestPlanPinning(t *testing.T) {
	p, err := planPinning("auto", []int{0})
	if err != nil || p.Mode != ModeOff || !strings.Contains(p.Note, "one CPU") {
		t.Errorf("one CPU: %+v %v", p, err)
	}
	p, err = planPinning(ModeSchedSetaffinity, []int{0, 1, 2})
	if err != nil || cpuList(p.ServerCPUs) != "0" || cpuList(p.LoadgenCPUs) != "1-2" {
		t.Errorf("three CPUs: %+v %v", p, err)
	}
	if _, err := planPinning("sometimes", []int{0, 1}); err == nil {
		t.Error("bad mode accepted")
	}
	for in, want := range map[string]string{"0": "0", "0,1,2": "0-2", "0,2,3,5": "0,2-3,5"} {
		var cpus []int
		for _, s := range strings.Split(in, ",") {
			n, _ := strconv.Atoi(s)
			cpus = append(cpus, n)
		}
		if got := cpuList(cpus); got != want {
			t.Errorf("cpuList(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestGroupStopAll(t *testing.T) {
	var g Group
	var procs []*Proc
	for i := 0; i < 3; i++ {
		out := &lineWriter{lines: make(chan string, 8)}
		p, err := g.Start(Spec{Name: fmt.Sprint("p", i), Path: os.Args[0], Env: []string{"PROC_HELPER=ignore-term", "GORACE=atexit_sleep_ms=0"}, Stdout: out}, nil)
		if err != nil {
			t.Fatal(err)
		}
		out.next(t)
		procs = append(procs, p)
	}
	start := time.Now()
	if err := g.StopAll(100 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("StopAll took %s: not parallel?", d)
	}
	for _, p := range procs {
		if !p.Exited() {
			t.Errorf("%s still running", p.Name())
		}
	}
	if g.Running() != 0 {
		t.Errorf("group still runs %d", g.Running())
	}
}
