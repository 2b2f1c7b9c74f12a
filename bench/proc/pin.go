package proc

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Pinning modes.
const (
	ModeTaskset          = "taskset"           // taskset -c LIST exec's the program: every thread pinned from the start
	ModeSchedSetaffinity = "sched_setaffinity" // no taskset: bench pins every thread right after start
	ModeOff              = "off"               // one CPU, or asked not to pin
)

// Pinning splits the CPUs bench may use between the server and the load
// generators, so that a load generator that saturates its CPU does not steal
// the server's, and the server's CPU time is its own.
type Pinning struct {
	Mode        string
	ServerCPUs  []int
	LoadgenCPUs []int
	Note        string // one sentence for the report
	taskset     string
}

// PlanPinning decides the pinning from the CPUs in bench's own affinity
// mask: the first one for the server, the rest for the load generators.
// With one CPU, or mode "off", nothing is pinned and the note says so.
// mode is "auto", "taskset", "sched_setaffinity" or "off".
func PlanPinning(mode string) (*Pinning, error) {
	cpus, err := UsableCPUs()
	if err != nil {
		return nil, err
	}
	return planPinning(mode, cpus)
}

func planPinning(mode string, cpus []int) (*Pinning, error) {
	p := &Pinning{}
	switch mode {
	case "off":
		p.Mode = ModeOff
		p.Note = fmt.Sprintf("Not pinned (asked): the server and the load generators share all %d CPUs, so their CPU use interferes.", len(cpus))
		return p, nil
	case "auto", ModeTaskset, ModeSchedSetaffinity:
	default:
		return nil, fmt.Errorf("pinning mode %q: want auto, taskset, sched_setaffinity or off", mode)
	}
	if len(cpus) < 2 {
		p.Mode = ModeOff
		p.Note = "Only one CPU is available: the server and the load generators share it, so every latency and CPU figure includes the load generators' own work."
		return p, nil
	}
	p.ServerCPUs, p.LoadgenCPUs = cpus[:1], cpus[1:]
	switch mode {
	case "auto", ModeTaskset:
		if path, err := exec.LookPath("taskset"); err == nil {
			p.Mode, p.taskset = ModeTaskset, path
		} else if mode == ModeTaskset {
			return nil, fmt.Errorf("pinning with taskset: %w", err)
		} else {
			p.Mode = ModeSchedSetaffinity
		}
	default:
		p.Mode = ModeSchedSetaffinity
	}
	p.Note = fmt.Sprintf("Server pinned to CPU %s, load generators to CPU %s (%s); each process's GOMAXPROCS equals its CPU count. Both sides still share one machine (memory, caches, loopback).",
		cpuList(p.ServerCPUs), cpuList(p.LoadgenCPUs), p.Mode)
	return p, nil
}

// UsableCPUs lists the CPUs in bench's affinity mask.
func UsableCPUs() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("read CPU affinity: %w", err)
	}
	var cpus []int
	for i := 0; i < len(set)*64; i++ {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	if len(cpus) == 0 {
		return nil, fmt.Errorf("read CPU affinity: empty mask")
	}
	return cpus, nil
}

// pinAllThreads sets the affinity of every thread of pid. Threads created
// later inherit the mask of the thread that creates them, so after two
// passes (the second catches threads born during the first) the process
// stays pinned.
func pinAllThreads(pid int, cpus []int) error {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	for pass := 0; pass < 2; pass++ {
		tids, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
		if err != nil {
			return fmt.Errorf("list threads: %w", err)
		}
		for _, t := range tids {
			tid, err := strconv.Atoi(filepath.Base(t))
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
				return fmt.Errorf("sched_setaffinity %d: %w", tid, err)
			}
		}
	}
	return nil
}

// AllowedCPUs reads the CPUs a running process may use
// (Cpus_allowed_list in /proc/PID/status), to check and record pinning.
func AllowedCPUs(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "", fmt.Errorf("read status: %w", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("no Cpus_allowed_list in /proc/%d/status", pid)
}

// cpuList writes CPUs as taskset and /proc do: "0", "1-3", "0,2".
func cpuList(cpus []int) string {
	var parts []string
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if j > i {
			parts = append(parts, fmt.Sprintf("%d-%d", cpus[i], cpus[j]))
		} else {
			parts = append(parts, strconv.Itoa(cpus[i]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

// CPUList is cpuList for callers outside the package.
func CPUList(cpus []int) string { return cpuList(cpus) }
