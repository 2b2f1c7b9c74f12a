// Package env describes the machine a bench run ran on, for env.json and
// for the line under every table: a number without its conditions (CPU,
// cores, kernel, limits, pinning, commit) cannot be compared with another.
package env

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pushbench/pushbench/bench/proc"
	"github.com/pushbench/pushbench/bench/report"
	"github.com/pushbench/pushbench/internal/rlimit"
)

// Collect reads the environment. Anything it cannot read is left empty:
// describing the machine must never stop a run. dir is where git is asked
// for the commit.
func Collect(ctx context.Context, pin *proc.Pinning, dir string) report.Env {
	e := report.Env{
		GoVersion:  runtime.Version(),
		GOOS:       runtime.GOOS,
		GOARCH:     runtime.GOARCH,
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		Time:       time.Now().UTC(),
	}
	e.CPUModel, e.Cores = cpuInfo()
	if e.Cores == 0 {
		e.Cores = runtime.NumCPU()
	}
	e.UsableCPUs, _ = proc.UsableCPUs()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		e.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if soft, hard, err := rlimit.Files(); err == nil {
		e.OpenFiles, e.OpenFilesHard = soft, hard
	}
	if b, err := os.ReadFile("/proc/sys/net/core/somaxconn"); err == nil {
		e.SomaxConn, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		e.PortRange = strings.Join(strings.Fields(string(b)), "-")
	}
	e.MemTotalBytes = memTotal()
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		for _, f := range strings.Fields(string(b))[:3] {
			v, _ := strconv.ParseFloat(f, 64)
			e.LoadAvg = append(e.LoadAvg, v)
		}
	}
	e.GitCommit, e.GitDirty = git(ctx, dir)
	if pin != nil {
		e.Pinning = report.Pinning{Mode: pin.Mode, ServerCPUs: pin.ServerCPUs, LoadgenCPUs: pin.LoadgenCPUs, Note: pin.Note,
			ServerGOMAXPROCS: len(pin.ServerCPUs), LoadgenGOMAXPROCS: len(pin.LoadgenCPUs)}
		if pin.Mode == proc.ModeOff {
			e.Pinning.ServerGOMAXPROCS, e.Pinning.LoadgenGOMAXPROCS = len(e.UsableCPUs), len(e.UsableCPUs)
		}
	}
	return e
}

// cpuInfo reads the CPU model and the number of online processors.
func cpuInfo() (model string, cores int) {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "", 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "processor":
			cores++
		case "model name":
			if model == "" {
				model = strings.Join(strings.Fields(v), " ")
			}
		}
	}
	return model, cores
}

func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

// git returns the commit of dir's work tree and whether it has changes.
func git(ctx context.Context, dir string) (string, bool) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	run := func(args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = dir
		return cmd.Output()
	}
	out, err := run("rev-parse", "HEAD")
	if err != nil {
		return "", false
	}
	commit := strings.TrimSpace(string(out))
	st, err := run("status", "--porcelain", "--untracked-files=no")
	return commit, err == nil && len(bytes.TrimSpace(st)) > 0
}
