package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
)

// TLS: an https:// base URL makes every client dial TLS (wss:// for
// WebSocket). The handshake is part of Connect, so it is inside the
// connect time. The socket below TLS counts the ciphertext into
// Counters.In and Out, what crosses the network; the Conn above it counts
// what TLS carried into PlainIn and PlainOut. TLS connections are read by
// the client's goroutine: a Loop reads raw sockets and cannot decrypt.

// ErrTLS marks a TLS handshake that failed for another reason than the
// network (Cause: "tls_cert" for a certificate the client does not trust,
// "tls" otherwise).
var ErrTLS = errors.New("tls handshake failed")

// wireConn counts the bytes that cross the socket under TLS.
type wireConn struct {
	net.Conn
	counters *Counters
}

func (c *wireConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.counters.In.Add(int64(n))
	}
	return n, err
}

func (c *wireConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.counters.Out.Add(int64(n))
	}
	return n, err
}

// prepareTLS sets c.tlsConf from c.TLS for an https base URL: the server
// name of the URL and the ALPN protocols of c.Proto (HTTP/1.1 only for
// WebSocket and h1, so that the server cannot pick h2 under a client that
// speaks HTTP/1.1).
func (c *Config) prepareTLS() {
	if c.Base.Scheme != "https" {
		c.tlsConf = nil
		return
	}
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.TLS != nil {
		t = c.TLS.Clone()
	}
	if t.ServerName == "" {
		t.ServerName = c.Base.Hostname()
	}
	t.NextProtos = []string{"http/1.1"}
	if c.Proto == ProtoH2 {
		t.NextProtos = []string{"h2"}
	}
	c.tlsConf = t
}

// wrap makes the Conn of a dialed socket: the socket itself, or over TLS
// a *tls.Conn on a counting socket, its handshake still to do (handshake).
func (c *Config) wrap(raw net.Conn, counters *Counters) *Conn {
	if counters == nil {
		counters = new(Counters)
	}
	if c.tlsConf == nil {
		return NewConn(raw, counters)
	}
	tc := tls.Client(&wireConn{Conn: raw, counters: counters}, c.tlsConf)
	return &Conn{Conn: tc, counters: counters, in: &counters.PlainIn, out: &counters.PlainOut, sock: raw}
}

// handshake runs the TLS handshake of a Conn made by wrap (nothing without
// TLS), within the connect timeout.
func (c *Config) handshake(ctx context.Context, conn *Conn) error {
	tc, ok := conn.Conn.(*tls.Conn)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.ConnectTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("%w with %s: %w", ErrTLS, c.hostport, err)
	}
	return nil
}

// negotiated returns the ALPN protocol of a TLS Conn, "" without TLS.
func negotiated(conn *Conn) string {
	if tc, ok := conn.Conn.(*tls.Conn); ok {
		return tc.ConnectionState().NegotiatedProtocol
	}
	return ""
}

// Dial opens a connection to the server as the clients do (TLS: with its
// handshake), counting its bytes into counters, for a caller that speaks
// HTTP through another library (shortpoll's http.Transport).
func (c *Config) Dial(ctx context.Context, d *Dialer, counters *Counters) (*Conn, error) {
	raw, err := d.DialContext(ctx, "tcp", c.hostport)
	if err != nil {
		return nil, err
	}
	conn := c.wrap(raw, counters)
	stop := cutOnCancel(ctx, conn)
	defer stop()
	if err := c.handshake(ctx, conn); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return conn, nil
}
