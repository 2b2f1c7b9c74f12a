// Package protocol is what the server needs of the protocols it speaks
// besides plaintext HTTP/1.1: a TLS certificate (generated in memory or
// loaded from files), the TLS settings, and HTTP/2's settings, over TLS
// (negotiated by ALPN) or cleartext with prior knowledge (h2c).
//
// It holds no state: main builds a Config from flags and the server applies
// it to its http.Server (see server.Server.HTTP).
package protocol

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"strings"
	"time"
)

// Label values of the protocol a request arrived over, in /metrics.
const (
	H1 = "h1" // HTTP/1.1, plaintext or TLS
	H2 = "h2" // HTTP/2, over TLS or cleartext (h2c)
)

// Of is the protocol label of r.
func Of(r *http.Request) string {
	if r.ProtoMajor == 2 {
		return H2
	}
	return H1
}

// Defaults of Config, doubling as flag defaults.
const (
	// DefaultMaxStreams is the concurrent streams one HTTP/2 connection may
	// have open, net/http's own default: a browser opens about 100 event
	// streams per connection at most, and a client past the limit is
	// refused per RFC 9113 §5.1.2 (counted in /metrics).
	DefaultMaxStreams = 250
	// StreamWindow is the flow-control window the server grants each
	// HTTP/2 stream for data the client sends. No endpoint takes a body
	// (a request that declares one gets 400), so the window only bounds
	// what a misbehaving client can make the server buffer per stream:
	// 16 KiB, against net/http's 1 MiB.
	StreamWindow = 16 << 10
	// ConnWindow is the same for the whole connection, the smallest that
	// net/http accepts (64 KiB, against 1 MiB).
	ConnWindow = 64 << 10
)

// Config is how the server speaks beyond plaintext HTTP/1.1. The zero
// Config is plaintext HTTP/1.1 only.
type Config struct {
	// TLS, when set, serves HTTPS (and WSS): HTTP/2 and HTTP/1.1 are
	// offered by ALPN, HTTP/2 preferred.
	TLS *tls.Config
	// H2C accepts cleartext HTTP/2 with prior knowledge beside HTTP/1.1
	// (an "Upgrade: h2c" request is served as HTTP/1.1). Ignored with TLS.
	H2C bool
	// MaxStreams bounds the concurrent streams of one HTTP/2 connection;
	// 0: DefaultMaxStreams.
	MaxStreams int
}

// Protocols are the http.Server protocols c enables.
func (c Config) Protocols() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	if c.TLS != nil {
		p.SetHTTP2(true)
	} else if c.H2C {
		p.SetUnencryptedHTTP2(true)
	}
	return &p
}

// HTTP2 are the HTTP/2 settings. writeTimeout closes a connection whose
// socket accepts no byte for that long (each stream has its own write
// deadline besides: one stalled stream must not take the others down, but
// a stalled connection holds all of them). countError is told of every
// protocol error by its net/http name (see Refusal).
func (c Config) HTTP2(writeTimeout time.Duration, countError func(string)) *http.HTTP2Config {
	streams := c.MaxStreams
	if streams <= 0 {
		streams = DefaultMaxStreams
	}
	return &http.HTTP2Config{
		MaxConcurrentStreams:          streams,
		MaxReceiveBufferPerStream:     StreamWindow,
		MaxReceiveBufferPerConnection: ConnWindow,
		WriteByteTimeout:              writeTimeout,
		CountError:                    countError,
	}
}

// Refusal reports whether a net/http HTTP/2 error name (HTTP2Config's
// CountError gets "<conn|stream>_<code>_<cause>") is a stream refused
// because the connection had MaxStreams open: "stream_PROTOCOL_ERROR_
// over_max_streams", or "stream_REFUSED_STREAM_over_max_streams_race"
// while the client may not have the limit yet.
func Refusal(errType string) bool {
	return strings.HasSuffix(errType, "_over_max_streams") || strings.HasSuffix(errType, "_over_max_streams_race")
}

// TLSConfig serves cert with TLS 1.2 at least (1.3 when the client has it,
// which Go prefers), session tickets on (resumption saves a full handshake
// on reconnects), and ALPN offering h2 then http/1.1.
func TLSConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates:           []tls.Certificate{cert},
		MinVersion:             tls.VersionTLS12,
		SessionTicketsDisabled: false,
		NextProtos:             []string{"h2", "http/1.1"},
	}
}

// SelfSigned makes an ECDSA P-256 certificate valid for a year for
// 127.0.0.1, ::1, localhost and hosts (IP addresses or names; empty ones
// and duplicates are skipped), in memory.
func SelfSigned(hosts ...string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"pushbench"}, CommonName: "pushbench self-signed"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // so that a client may trust it as its own root (-ca)
	}
	seen := map[string]bool{}
	for _, h := range append([]string{"127.0.0.1", "::1", "localhost"}, hosts...) {
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// Load reads a PEM certificate chain and its private key. Errors say which
// file is wrong: unreadable, not PEM, or a key that does not match.
func Load(certFile, keyFile string) (tls.Certificate, error) {
	if certFile == "" || keyFile == "" {
		return tls.Certificate{}, errors.New("-cert and -key go together")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("load %s and %s: %w", certFile, keyFile, err)
	}
	return cert, nil
}

// Fingerprint is the SHA-256 of the leaf certificate's DER, as browsers
// and `openssl x509 -fingerprint -sha256` show it (colon-separated hex).
func Fingerprint(cert tls.Certificate) string {
	if len(cert.Certificate) == 0 {
		return ""
	}
	sum := sha256.Sum256(cert.Certificate[0])
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}
