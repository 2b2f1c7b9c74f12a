// Package gorillahub serves WebSocket the way gorilla/websocket's chat
// example teaches: one hub goroutine owns the set of clients and fans each
// message out to a 256-message send channel per client; a client whose
// channel is full is dropped; each client has a read pump (read limit,
// pong deadline) and a write pump (one WriteMessage per tick under a write
// deadline, a ping every period).
//
// What it lacks: resume and gaps (since is parsed and ignored; a client is
// sent only what is published while it is connected) and symbol filters
// (the hub broadcasts every message to every client, like a chat room).
//
// Ownership: Run owns the hub; each client's two pumps run through the
// server's goroutine hook (Env.Go) so that shutdown waits for them. The hub
// closes a client's send channel; the write pump then sends a close frame
// and closes the connection, which ends the read pump.
package gorillahub

import (
	"context"
	"net/http"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushbench/pushbench/servers/feed"
	"github.com/pushbench/pushbench/servers/impls/host"
)

// The chat example's constants, with its period and wait taken from -ping
// and -write-timeout.
const (
	sendBuffer     = 256
	maxMessageSize = 512
)

// Service is the hub endpoint.
type Service struct {
	env        host.Env
	upgrader   websocket.Upgrader
	register   chan *client
	unregister chan *client
	broadcast  chan *feed.Frame
	done       chan struct{}
}

type client struct {
	conn *websocket.Conn
	send chan *feed.Frame
}

// New builds the service; Run starts its hub.
func New(env host.Env) (*Service, error) {
	return &Service{env: env, upgrader: websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 1024},
		register: make(chan *client), unregister: make(chan *client), broadcast: make(chan *feed.Frame),
		done: make(chan struct{})}, nil
}

var _ host.Service = (*Service)(nil)

// Run is the hub (the example's Hub.run), fed tick by tick from the feed.
func (s *Service) Run(ctx context.Context) error {
	defer close(s.done)
	clients := map[*client]bool{}
	defer func() {
		for c := range clients {
			close(c.send)
		}
	}()
	followCtx, cancel := context.WithCancel(ctx)
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		host.Follow(followCtx, s.env.Feed.Ring(), func(frames []*feed.Frame) {
			for _, f := range frames {
				select {
				case s.broadcast <- f:
				case <-followCtx.Done():
					return
				}
			}
		}, nil)
	}()
	defer func() { cancel(); <-followed }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case c := <-s.register:
			clients[c] = true
		case c := <-s.unregister:
			if _, ok := clients[c]; ok {
				delete(clients, c)
				close(c.send)
			}
		case f := <-s.broadcast:
			for c := range clients {
				select {
				case c.send <- f:
				default:
					close(c.send)
					delete(clients, c)
					s.env.Metrics.SlowWrite.Inc()
				}
			}
		}
	}
}

// ServeHTTP upgrades and registers a client (the example's serveWs).
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, err := s.env.Parse(r, "", "since"); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	release, ok := s.env.Take(w, r, func(w http.ResponseWriter, code int, msg string) { http.Error(w, msg, code) })
	if !ok {
		return
	}
	conn, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		release()
		return
	}
	c := &client{conn: conn, send: make(chan *feed.Frame, sendBuffer)}
	select {
	case s.register <- c:
	case <-s.done:
		conn.Close()
		release()
		return
	}
	s.env.Start(release, func() { conn.Close() }, func(ctx context.Context, cancel context.CancelFunc) {
		readDone := make(chan struct{})
		if !s.env.Go(func() { defer close(readDone); s.readPump(c) }) {
			close(readDone)
		}
		s.writePump(c)
		conn.Close()
		<-readDone
	})
}

func (s *Service) pongWait() time.Duration { return s.env.Ping * 10 / 9 } // the example: ping at 9/10 of pongWait

// readPump reads (and discards) until the connection fails, so that pongs
// and close frames are handled; it then unregisters the client.
func (s *Service) readPump(c *client) {
	defer func() {
		select {
		case s.unregister <- c:
		case <-s.done:
		}
		c.conn.Close()
	}()
	c.conn.SetReadLimit(maxMessageSize)
	_ = c.conn.SetReadDeadline(time.Now().Add(s.pongWait()))
	c.conn.SetPongHandler(func(string) error { return c.conn.SetReadDeadline(time.Now().Add(s.pongWait())) })
	for {
		if _, _, err := c.conn.ReadMessage(); err != nil {
			return
		}
	}
}

// writePump writes each tick as one message and pings every period; a
// closed send channel (dropped, or the hub stopped) ends it with a close
// frame.
func (s *Service) writePump(c *client) {
	m := s.env.Metrics
	ticker := time.NewTicker(s.env.Ping)
	defer ticker.Stop()
	for {
		select {
		case f, ok := <-c.send:
			_ = c.conn.SetWriteDeadline(time.Now().Add(s.env.WriteTimeout))
			if !ok {
				_ = c.conn.WriteMessage(websocket.CloseMessage, []byte{})
				return
			}
			if err := c.conn.WriteMessage(websocket.TextMessage, f.JSON); err != nil {
				m.WriteFailed(err)
				return
			}
			m.Delivered(1)
			m.Bytes.Add(float64(len(f.JSON)))
		case <-ticker.C:
			_ = c.conn.SetWriteDeadline(time.Now().Add(s.env.WriteTimeout))
			if err := c.conn.WriteMessage(websocket.PingMessage, nil); err != nil {
				m.WriteFailed(err)
				return
			}
		}
	}
}
