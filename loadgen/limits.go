package loadgen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/pushbench/pushbench/internal/rlimit"
)

// FDReserve is what a load-generator process needs besides one descriptor
// per connection: stdio, the epoll instance, the output file, the runtime.
const FDReserve = 64

// FileLimitError says that the clients asked for cannot all be open at once.
type FileLimitError struct {
	Clients, Fit int
	Soft, Hard   uint64
}

func (e *FileLimitError) Error() string {
	return fmt.Sprintf("-clients %d needs about %d open files, but this process may open %d "+
		"(RLIMIT_NOFILE soft %d, hard %d): at most %d clients fit. Raise the hard limit "+
		"(as root: ulimit -Hn %d, LimitNOFILE= for a systemd unit, nofile in /etc/security/limits.conf) "+
		"or split the clients over several loadgen processes",
		e.Clients, e.Clients+FDReserve, e.Soft, e.Soft, e.Hard, e.Fit, e.Clients+FDReserve)
}

// fitFiles raises the soft open-files limit to the hard one and checks
// that conns connections fit, so that a run that cannot work stops before
// it starts instead of failing thousands of connections with EMFILE.
func fitFiles(conns int) error {
	soft, hard, err := rlimit.RaiseFiles()
	if err != nil {
		return err
	}
	if uint64(conns)+FDReserve > soft {
		fit := 0
		if soft > FDReserve {
			fit = int(soft - FDReserve)
		}
		return &FileLimitError{Clients: conns, Fit: fit, Soft: soft, Hard: hard}
	}
	return nil
}

// ephemeralPorts returns how many local ports the kernel hands out per
// source address (28,232 by default on Linux).
func ephemeralPorts() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 28232
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 28232
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || hi < lo {
		return 28232
	}
	return hi - lo + 1
}

// maxSourceIPs bounds -source-ips ranges.
const maxSourceIPs = 4096

// ParseSourceIPs parses "127.0.0.2-127.0.0.40", "127.0.0.2,127.0.0.3" or a
// mix; "" and "auto" return nil (chosen automatically).
func ParseSourceIPs(s string) ([]net.IP, error) {
	if s == "" || s == "auto" {
		return nil, nil
	}
	var ips []net.IP
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a := net.ParseIP(lo)
		if a == nil {
			return nil, fmt.Errorf("-source-ips: bad address %q", lo)
		}
		if !isRange {
			ips = append(ips, a)
			continue
		}
		b := net.ParseIP(hi)
		if a.To4() == nil || b == nil || b.To4() == nil {
			return nil, fmt.Errorf("-source-ips: a range needs two IPv4 addresses, got %q", part)
		}
		x, y := binary.BigEndian.Uint32(a.To4()), binary.BigEndian.Uint32(b.To4())
		if y < x {
			return nil, fmt.Errorf("-source-ips: empty range %q", part)
		}
		if y-x >= maxSourceIPs {
			return nil, fmt.Errorf("-source-ips: range %q has more than %d addresses", part, maxSourceIPs)
		}
		for v := x; ; v++ {
			ip := make(net.IP, 4)
			binary.BigEndian.PutUint32(ip, v)
			ips = append(ips, ip)
			if v == y {
				break
			}
		}
	}
	if len(ips) > maxSourceIPs {
		return nil, fmt.Errorf("-source-ips: more than %d addresses", maxSourceIPs)
	}
	return ips, nil
}

// chooseSourceIPs returns the source addresses for conns connections to
// host: the given ones, or nil (the kernel picks) when one address has
// ports enough, or as many loopback addresses as needed (127.0.0.1 up)
// when the target is on loopback, where every 127.x address is local.
func chooseSourceIPs(given []net.IP, host string, conns int) ([]net.IP, error) {
	perIP := ephemeralPorts() * 9 / 10 // leave room for TIME_WAIT and other programs
	if len(given) > 0 {
		if conns > perIP*len(given) {
			return nil, fmt.Errorf("%d connections need about %d source addresses (%d ports each), -source-ips gives %d",
				conns, (conns+perIP-1)/perIP, perIP, len(given))
		}
		return given, nil
	}
	if conns <= perIP {
		return nil, nil
	}
	target := net.ParseIP(host)
	if target == nil {
		if addrs, err := net.LookupIP(host); err == nil && len(addrs) > 0 {
			target = addrs[0]
		}
	}
	if target == nil || !target.IsLoopback() || target.To4() == nil {
		return nil, errors.New("more connections than one source address has ports: " +
			"set -source-ips to addresses of this host (chosen automatically only for 127.0.0.0/8 targets)")
	}
	n := (conns + perIP - 1) / perIP
	ips := make([]net.IP, n)
	for i := range ips {
		ips[i] = net.IPv4(127, 0, 0, byte(1+i)).To4()
	}
	return ips, nil
}
