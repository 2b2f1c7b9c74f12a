package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/gorilla/websocket"
)

// ErrProtocol marks a response that breaks the wire contract (a bad status
// line, a wrong Content-Type, a malformed chunk): the server is not speaking
// the protocol, which is different from the network failing.
var ErrProtocol = errors.New("protocol error")

// StatusError is an HTTP response other than the one expected.
type StatusError struct {
	Code int
	Body string // the start of the body, for the message
}

func (e *StatusError) Error() string {
	if e.Body != "" {
		return fmt.Sprintf("HTTP %d: %s", e.Code, e.Body)
	}
	return fmt.Sprintf("HTTP %d", e.Code)
}

// Cause sorts a connection failure into the few causes the report counts,
// so that "the server refused 400 connections" reads differently from "the
// load generator ran out of file descriptors". nil gives "".
func Cause(err error) string {
	if err == nil {
		return ""
	}
	var se *StatusError
	var ce *websocket.CloseError
	var ne net.Error
	switch {
	case certError(err):
		return "tls_cert" // one clear cause, not the timeouts of retries
	case errors.As(err, &se):
		return fmt.Sprintf("http_%d", se.Code)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		return "reset"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "emfile"
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EADDRINUSE):
		return "no_port" // ephemeral ports of the source address exhausted
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.As(err, &ce):
		return fmt.Sprintf("ws_close_%d", ce.Code)
	case errors.Is(err, ErrProtocol), errors.Is(err, websocket.ErrBadHandshake):
		return "protocol"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return "closed"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, ErrTLS), tlsAlert(err):
		return "tls" // e.g. a server that does not speak TLS, or an alert
	}
	return "other"
}

// tlsAlert reports whether err is a TLS alert, sent (a record that did
// not decrypt: "local error") or received ("remote error").
func tlsAlert(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && (oe.Op == "local error" || oe.Op == "remote error")
}

// certError reports whether err is the client's refusal of the server's
// certificate (unknown authority, wrong host, expired).
func certError(err error) bool {
	var cve *tls.CertificateVerificationError
	var uae x509.UnknownAuthorityError
	var he x509.HostnameError
	var cie x509.CertificateInvalidError
	return errors.As(err, &cve) || errors.As(err, &uae) || errors.As(err, &he) || errors.As(err, &cie)
}
