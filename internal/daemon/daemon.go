// Package daemon wires the server together from its configuration: store,
// TLS, the XMPP core and its modules, the listeners, HTTP and the admin
// socket. cmd/xmppd is a thin main around it, and tests start the very same
// thing in-process.
package daemon

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"dialtone/auth"
	"dialtone/internal/admin"
	"dialtone/internal/config"
	"dialtone/internal/tlscert"
	"dialtone/storage"
	"dialtone/xmppd"
	"dialtone/xmppd/ext"
	"dialtone/xmppd/im"
	"dialtone/xmppd/web"
)

// Version is the server's software version (XEP-0092).
var Version = "0.1.0"

// Daemon is a configured, listening server.
type Daemon struct {
	cfg      config.Config
	log      *slog.Logger
	DB       *storage.DB
	Server   *xmppd.Server
	blocking *ext.Blocking
	http     *http.Server

	c2s, direct, httpL net.Listener
}

// New opens the store, builds the server and binds every listener, so that
// a bad address or an unreachable database stops the start at once.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (d *Daemon, err error) {
	d = &Daemon{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			d.closeAll()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("XMPPD_DATA_DIR: %w", err)
	}
	cert, err := tlscert.Load(cfg.TLSCertFile, cfg.TLSKeyFile, cfg.DataDir, cfg.Domain)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	secret, err := SecretKey(cfg)
	if err != nil {
		return nil, err
	}
	d.DB, err = storage.Open(ctx, cfg.DatabaseURL, cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("XMPPD_DATABASE_URL: %w", err)
	}
	parser, err := auth.NewNumberParser(cfg.DefaultRegion, cfg.AllowedRegions)
	if err != nil {
		return nil, fmt.Errorf("XMPPD_DEFAULT_REGION: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d.Server, err = xmppd.NewServer(xmppd.Config{
		Domain:   cfg.Domain,
		TLS:      &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		SASL:     &auth.SASL{Parser: parser, Store: d.DB, Lockout: auth.NewLockout(cfg.LoginFailures), Secret: secret, Domain: cfg.Domain},
		Parser:   parser,
		Accounts: d.DB,
		Log:      log,
		Metrics:  xmppd.NewMetrics(reg),

		AuthTimeout: cfg.AuthTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("XMPPD_DOMAIN: %w", err)
	}
	d.registerModules()

	if d.c2s, err = listen("XMPPD_C2S_ADDR", cfg.C2SAddr); err != nil {
		return nil, err
	}
	if cfg.C2SDirectTLSAddr != "" {
		if d.direct, err = listen("XMPPD_C2S_DIRECT_TLS_ADDR", cfg.C2SDirectTLSAddr); err != nil {
			return nil, err
		}
	}
	if cfg.HTTPAddr != "" {
		if d.httpL, err = listen("XMPPD_HTTP_ADDR", cfg.HTTPAddr); err != nil {
			return nil, err
		}
	}
	d.http = &http.Server{
		Handler:           web.New(web.Options{Health: d.DB.Ping, Gatherer: reg}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	return d, nil
}

// registerModules plugs the feature modules into the server's Mux; the
// disco module comes last since it advertises what the others registered.
func (d *Daemon) registerModules() {
	srv, mux := d.Server, d.Server.Mux()
	im.New(d.DB, srv, d.log).Register(mux)
	ext.NewPing(srv).Register(mux)
	ext.NewVersion(Version).Register(mux)
	ext.NewVCard(srv, d.DB).Register(mux)
	ext.NewPrivate(d.DB).Register(mux)
	d.blocking = ext.NewBlocking(srv, d.DB)
	d.blocking.Register(mux)
	disco := ext.NewDisco(mux, srv, "Dialtone")
	disco.Register(mux)
	mux.AddStreamFeature(disco.CapsElement())
	mux.AddStreamFeature([]byte(`<sub xmlns="` + im.PreApprovalFeature + `"/>`))
}

func listen(name, addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return l, nil
}

// Addr returns the bound address of a listener: "c2s", "direct" or "http"
// ("" when disabled).
func (d *Daemon) Addr(which string) string {
	var l net.Listener
	switch which {
	case "c2s":
		l = d.c2s
	case "direct":
		l = d.direct
	case "http":
		l = d.httpL
	}
	if l == nil {
		return ""
	}
	return l.Addr().String()
}

// Run serves until ctx is cancelled, then shuts down gracefully: streams
// get system-shutdown after what was queued for them, and the store is
// closed last.
func (d *Daemon) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	serve := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	serve(func() error { return d.Server.ServeC2S(d.c2s) })
	if d.direct != nil {
		serve(func() error { return d.Server.ServeDirectTLS(d.direct) })
	}
	if d.httpL != nil {
		serve(func() error { return d.http.Serve(d.httpL) })
	}
	actx, cancelAdmin := context.WithCancel(context.Background())
	defer cancelAdmin()
	serve(func() error {
		err := admin.Serve(actx, d.cfg.AdminSocket, d.Server, d.log)
		if err != nil && actx.Err() == nil {
			return fmt.Errorf("XMPPD_ADMIN_SOCKET: %w", err)
		}
		return nil
	})
	bctx, cancelBlocking := context.WithCancel(context.Background())
	defer cancelBlocking()
	go d.blocking.Run(bctx)
	if d.cfg.S2SAddr != "" {
		d.log.Warn("federation is not implemented yet; XMPPD_S2S_ADDR is not listened on", "addr", d.cfg.S2SAddr)
	}
	d.log.Info("xmppd started", "domain", d.cfg.Domain, "c2s", d.Addr("c2s"), "c2s_direct_tls", d.Addr("direct"),
		"http", d.Addr("http"), "store", d.DB.Driver(), "version", Version)

	var runErr error
	select {
	case <-ctx.Done():
		d.log.Info("shutting down")
	case runErr = <-errc:
		d.log.Error("a listener failed; shutting down", "err", runErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	d.http.Shutdown(sctx)
	if err := d.Server.Shutdown(sctx); err != nil {
		d.log.Error("sessions did not end in time", "err", err)
	}
	cancelAdmin()
	cancelBlocking()
	wg.Wait()
	if err := d.DB.Close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("closing the store: %w", err)
	}
	return runErr
}

func (d *Daemon) closeAll() {
	for _, l := range []net.Listener{d.c2s, d.direct, d.httpL} {
		if l != nil {
			l.Close()
		}
	}
	if d.DB != nil {
		d.DB.Close()
	}
}

// SecretKey returns XMPPD_SECRET_KEY, or the key kept in the data dir,
// making it on first use (SPEC.md: "made once and kept in the data dir").
func SecretKey(cfg config.Config) ([]byte, error) {
	key, err := cfg.SecretKeyBytes()
	if err != nil {
		return nil, fmt.Errorf("XMPPD_SECRET_KEY: %w", err)
	}
	if key != nil {
		return key, nil
	}
	path := filepath.Join(cfg.DataDir, "secret.key")
	if b, err := os.ReadFile(path); err == nil {
		key, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(key) != 32 {
			return nil, fmt.Errorf("%s: not 64 hex digits; remove it to make a new key", path)
		}
		return key, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	key = make([]byte, 32)
	rand.Read(key)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	return key, nil
}
