// Package proc starts, pins and stops the processes of a bench run.
//
// Every process runs in its own process group, so that stopping it reaches
// anything it started, and a terminal's Ctrl-C reaches bench alone: bench
// decides the order of shutdown (load generators, then the server) instead
// of everything dying at once mid-measurement. Each process also gets
// PR_SET_PDEATHSIG=SIGKILL, so that if bench itself dies (crash, kill -9)
// the kernel kills its children and no server is left holding a port.
//
// Ownership: whoever calls Start owns the Proc and must call Stop (or Kill);
// a Group can own many and stop them all at once. Done, Err and Stderr are
// safe to call from any goroutine.
package proc

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Spec describes a process to start.
type Spec struct {
	Name   string   // for messages: "server", "loadgen 2"
	Path   string   // the executable
	Args   []string // without argv[0]
	Env    []string // added to bench's environment
	CPUs   []int    // pin to these CPUs (see Pinning); nil: no pinning
	Stdout io.Writer
	Stderr io.Writer // besides the tail that Proc keeps
}

// Proc is a started process.
type Proc struct {
	spec     Spec
	cmd      *exec.Cmd
	started  time.Time
	done     chan struct{}
	err      error // valid once done is closed
	exitedAt time.Time
	stopAt   atomic.Int64 // UnixNano of the first Stop or Kill; 0 if none
	tail     *tail
	pinned   string // how CPUs were applied
}

// StderrTail is how much of a process's stderr is kept to explain a crash.
const StderrTail = 4 << 10

// Start starts spec's process in its own process group, pinned to spec.CPUs
// with pin (nil: not pinned).
func Start(spec Spec, pin *Pinning) (*Proc, error) {
	if spec.Name == "" {
		spec.Name = spec.Path
	}
	path, args := spec.Path, spec.Args
	mode := ""
	if len(spec.CPUs) > 0 && pin != nil && pin.Mode != ModeOff {
		mode = pin.Mode
		if mode == ModeTaskset {
			// taskset sets the mask and execs: the process and every thread
			// the Go runtime starts inherit it from the first instruction.
			args = append([]string{"-c", cpuList(spec.CPUs), path}, args...)
			path = pin.taskset
		}
	}
	cmd := exec.Command(path, args...)
	cmd.Env = os.Environ()
	if len(spec.CPUs) > 0 && mode != "" {
		// GOMAXPROCS follows the CPUs the process may use, whichever way the
		// mask was applied.
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(len(spec.CPUs)))
	}
	cmd.Env = append(cmd.Env, spec.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &Proc{spec: spec, cmd: cmd, done: make(chan struct{}), tail: &tail{max: StderrTail}, pinned: mode}
	cmd.Stdout = spec.Stdout
	if spec.Stderr != nil {
		cmd.Stderr = io.MultiWriter(p.tail, spec.Stderr)
	} else {
		cmd.Stderr = p.tail
	}
	// A stray grandchild holding the stderr pipe must not block Wait forever.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	p.started = time.Now()
	go func() {
		err := cmd.Wait()
		p.err, p.exitedAt = err, time.Now()
		close(p.done)
	}()
	if mode == ModeSchedSetaffinity {
		if err := pinAllThreads(cmd.Process.Pid, spec.CPUs); err != nil {
			p.Kill()
			return nil, fmt.Errorf("pin %s: %w", spec.Name, err)
		}
	}
	return p, nil
}

// Name is the process's name in messages.
func (p *Proc) Name() string { return p.spec.Name }

// Pid is the process id (and its process group id).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Started is when the process was started.
func (p *Proc) Started() time.Time { return p.started }

// Done is closed when the process has exited and its output is collected.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the exit error (nil for status 0); valid once Done is closed.
func (p *Proc) Err() error {
	<-p.done
	return p.err
}

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Unexpected reports whether the process exited before anyone asked it to:
// for a server in the middle of a run, that is a crash. It stays true after
// a later Stop, so that the crash is still reported.
func (p *Proc) Unexpected() bool {
	if !p.Exited() {
		return false
	}
	at := p.stopAt.Load()
	return at == 0 || p.exitedAt.UnixNano() < at
}

func (p *Proc) markStopping() { p.stopAt.CompareAndSwap(0, time.Now().UnixNano()) }

// Stderr returns the last StderrTail bytes the process wrote to stderr.
func (p *Proc) Stderr() string { return p.tail.String() }

// ExitSummary says how the process ended, for a report: "exit status 2
// after 1.3s; stderr: panic: ...". Call it once Done is closed.
func (p *Proc) ExitSummary() string {
	<-p.done
	how := "exit status 0"
	if p.err != nil {
		how = p.err.Error()
	}
	s := fmt.Sprintf("%s %s after %s", p.spec.Name, how, p.exitedAt.Sub(p.started).Round(time.Millisecond))
	if t := lastLines(p.Stderr(), 3); t != "" {
		s += "; stderr: " + t
	}
	return s
}

// Signal sends sig to the process group.
func (p *Proc) Signal(sig syscall.Signal) error {
	if err := syscall.Kill(-p.Pid(), sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s: %w", p.spec.Name, err)
	}
	return nil
}

// Stop asks the process group to end (SIGTERM), waits up to grace, then
// kills it (SIGKILL) and waits for it to be reaped. It returns an error only
// if the process could not be made to exit; the exit status is in Err.
func (p *Proc) Stop(grace time.Duration) error {
	p.markStopping()
	if !p.Exited() {
		if err := p.Signal(syscall.SIGTERM); err != nil {
			return err
		}
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-p.done:
		case <-t.C:
		}
	}
	// Also after a clean exit: nothing of the group may outlive the run.
	_ = p.Signal(syscall.SIGKILL)
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
		return fmt.Errorf("stop %s (pid %d): still running after SIGKILL", p.spec.Name, p.Pid())
	}
}

// Kill kills the process group at once and does not wait.
func (p *Proc) Kill() {
	p.markStopping()
	_ = p.Signal(syscall.SIGKILL)
}

// Group owns a set of processes so that all of them can be stopped at once,
// on the normal path, on Ctrl-C or on a panic. It is safe for concurrent use.
type Group struct {
	mu    sync.Mutex
	procs []*Proc
}

// Start starts a process and adds it to the group. Processes that have
// exited are forgotten here, so that a long bench does not keep (and later
// signal) process groups whose ids the kernel may have reused.
func (g *Group) Start(spec Spec, pin *Pinning) (*Proc, error) {
	p, err := Start(spec, pin)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	g.procs = slices.DeleteFunc(g.procs, (*Proc).Exited)
	g.procs = append(g.procs, p)
	g.mu.Unlock()
	return p, nil
}

// StopAll stops every process of the group in parallel, waiting up to grace
// for each to exit by itself, and forgets them.
func (g *Group) StopAll(grace time.Duration) error {
	g.mu.Lock()
	procs := g.procs
	g.procs = nil
	g.mu.Unlock()
	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Go(func() { errs[i] = p.Stop(grace) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// KillAll kills every process of the group without waiting: the last resort
// of a second Ctrl-C.
func (g *Group) KillAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, p := range g.procs {
		if !p.Exited() {
			p.Kill()
		}
	}
}

// Running is the number of the group's processes that have not exited.
func (g *Group) Running() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, p := range g.procs {
		if !p.Exited() {
			n++
		}
	}
	return n
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(b), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// lastLines returns the last n non-empty lines of s joined by " | ".
func lastLines(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
