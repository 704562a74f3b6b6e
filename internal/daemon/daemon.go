// Package daemon wires the server together from its configuration: store,
// TLS, the XMPP core and its modules, the listeners, HTTP and the admin
// socket. cmd/xmppd is a thin main around it, and tests start the very same
// thing in-process.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"mellium.im/xmpp/jid"

	"dialtone/account"
	"dialtone/auth"
	"dialtone/internal/admin"
	"dialtone/internal/config"
	"dialtone/internal/datadir"
	"dialtone/internal/secret"
	"dialtone/internal/tlscert"
	"dialtone/offline"
	"dialtone/roster"
	"dialtone/sms"
	"dialtone/storage"
	"dialtone/turn"
	"dialtone/upload"
	"dialtone/xmppd"
	"dialtone/xmppd/cluster"
	"dialtone/xmppd/mod/avatar"
	"dialtone/xmppd/mod/blocking"
	"dialtone/xmppd/mod/bookmarks"
	"dialtone/xmppd/mod/carbons"
	"dialtone/xmppd/mod/csi"
	"dialtone/xmppd/mod/disco"
	"dialtone/xmppd/mod/extdisco"
	"dialtone/xmppd/mod/mam"
	"dialtone/xmppd/mod/muc"
	offlinemod "dialtone/xmppd/mod/offline"
	"dialtone/xmppd/mod/pep"
	"dialtone/xmppd/mod/phonebook"
	"dialtone/xmppd/mod/ping"
	"dialtone/xmppd/mod/presence"
	"dialtone/xmppd/mod/private"
	pushmod "dialtone/xmppd/mod/push"
	"dialtone/xmppd/mod/register"
	rostermod "dialtone/xmppd/mod/roster"
	"dialtone/xmppd/mod/sm"
	xmpptime "dialtone/xmppd/mod/time"
	uploadmod "dialtone/xmppd/mod/upload"
	"dialtone/xmppd/mod/vcard"
	"dialtone/xmppd/mod/version"
	"dialtone/xmppd/router"
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
	blocking *blocking.Module
	http     *http.Server
	fed      *xmppd.Federation

	c2s, direct, httpL, s2s net.Listener

	// Passwords texts passwords: the home page and POST /api/v1/password
	// call its Request.
	Passwords *sms.Passwords
	// PINs serves the app API (GET /authentication/NUMBER, POST
	// /password); nil with XMPPD_APP_API=false.
	PINs *sms.PINs
	// Lockout counts failed logins per number; the web login shares it.
	Lockout *auth.Lockout
	// ipLockout counts failed logins per client IP, XMPP and web alike.
	ipLockout *auth.Lockout
	// Sender is the SMS outbox worker; Wake it after queueing an SMS.
	Sender *sms.Sender
	// Notices texts receivers that messages wait for them; its Run
	// closes the notice windows.
	Notices *sms.Notices
	// Offline stores messages for accounts without an available
	// resource (XEP-0160) and delivers them at the next login.
	Offline *offlinemod.Queue
	// offlineGroup writes Offline's messages, many per transaction.
	offlineGroup *account.Group
	// SM is stream management (XEP-0198); its Archived is for the
	// archive to set.
	SM *sm.Module
	// invitations keeps group invitations of numbers without a session.
	invitations *account.Invitations
	// Archive is the message archive (XEP-0313); stream management asks
	// its Archived.
	Archive *mam.Module
	// Push announces messages to the app servers of accounts without an
	// active session (XEP-0357).
	Push *pushmod.Module
	// Uploads is HTTP File Upload (XEP-0363): RequestSlot for the slot
	// request, the PUT and GET on the HTTP listener.
	Uploads *upload.Service
	// TURN lists the STUN and TURN servers with fresh credentials
	// (XEP-0215).
	TURN *turn.Servers

	// accounts applies the rules of password changes, recycled numbers
	// and released accounts.
	accounts *account.Lifecycle
	parser   *auth.NumberParser
	sweeper  *auth.Sweeper
	roster   *rostermod.Module
	register *register.Module
	carbons  *carbons.Module
	// Cluster links this node to the others (XMPPD_NATS_URL); nil for a
	// single node.
	Cluster *cluster.Cluster
	// jobs is xmppd_job_running: 1 for each once-per-cluster job this
	// node runs now (exclusive).
	jobs *prometheus.GaugeVec
}

// New opens the store, builds the server and binds every listener, so that
// a bad address or an unreachable database stops the start at once.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (d *Daemon, err error) {
	if cfg.NATSURL != "" {
		log = log.With("node", cfg.NodeName)
	}
	d = &Daemon{cfg: cfg, log: log}
	built := d // d is nil by the time a failed start returns
	defer func() {
		if err != nil {
			built.closeAll()
		}
	}()
	if err := datadir.Make(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("XMPPD_DATA_DIR: %w", err)
	}
	cert, err := tlscert.Load(cfg.TLSCertFile, cfg.TLSKeyFile, cfg.DataDir, cfg.Domain)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	d.DB, err = storage.OpenWith(ctx, cfg.DatabaseURL, cfg.DataDir, storage.Options{MaxConns: cfg.DatabaseMaxConns, StoreTimeout: cfg.StoreTimeout})
	if err != nil {
		return nil, fmt.Errorf("XMPPD_DATABASE_URL: %w", err)
	}
	// After the store: the nodes of a cluster share the key through it.
	secret, err := secret.SharedKey(ctx, cfg, d.DB)
	if err != nil {
		return nil, err
	}
	parser, err := auth.NewNumberParser(cfg.DefaultRegion, cfg.AllowedRegions)
	if err != nil {
		return nil, fmt.Errorf("XMPPD_DEFAULT_REGION: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d.Lockout = auth.NewLockout(cfg.LoginFailures)
	// One client IP may fail ten times as often as one number before
	// it is locked out the same way (1 min, doubling, at most 1 h).
	d.ipLockout = auth.NewLockout(10 * cfg.LoginFailures)
	if d.clustered() {
		d.Lockout.Share(d.DB, "login number", cfg.StoreTimeout)
		d.ipLockout.Share(d.DB, "login ip", cfg.StoreTimeout)
	}
	d.Server, err = xmppd.NewServer(xmppd.Config{
		Domain: cfg.Domain,
		TLS:    &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		SASL: &auth.SASL{Parser: parser, Store: d.DB, Lockout: d.Lockout, Secret: secret, Domain: cfg.Domain, Promote: d.promotePending,
			Tickets: d.DB, SHA512: (&auth.SHA512Gate{Missing: d.DB.AccountsWithoutSHA512}).Open, Fast: d.DB},
		// Shared with the web login (webOptions): failures on either
		// side count towards one lock.
		IPLockout: d.ipLockout,
		Parser:    parser,
		Accounts:  d.DB,
		Log:       log,
		Metrics:   xmppd.NewMetrics(reg),

		StoreTimeout:       cfg.StoreTimeout,
		AuthTimeout:        cfg.AuthTimeout,
		C2SRate:            cfg.C2SRate,
		SessionsPerAccount: cfg.SessionsPerAccount,
	})
	if err != nil {
		return nil, fmt.Errorf("XMPPD_DOMAIN: %w", err)
	}
	if err := d.accountLifecycle(parser, secret, reg); err != nil {
		return nil, err
	}
	d.offlineMessages(parser, secret)
	if err := d.filesAndCalls(secret); err != nil {
		return nil, err
	}
	if cfg.NATSURL != "" {
		d.Cluster, err = cluster.New(cluster.Config{URL: cfg.NATSURL, Node: cfg.NodeName, Router: d.Server.Router(), Log: log, Metrics: reg})
		if err != nil {
			return nil, err
		}
	}
	if err := d.registerModules(); err != nil {
		return nil, fmt.Errorf("modules: %w", err)
	}
	// Recycling a number resets the roster and block list the modules keep.
	d.accounts.Roster, d.accounts.Blocks = d.roster, forgetAll{d.blocking, d.Archive, d.Push}
	d.shareCaches()
	if err := d.resumeAcrossNodes(); err != nil {
		return nil, err
	}
	// Federation always: an empty XMPPD_S2S_ADDR stops only the listener,
	// links to other servers are still opened (SPEC.md).
	if err := d.federate(reg); err != nil {
		return nil, err
	}

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
		Handler:           web.New(d.webOptions(cert, secret, reg)),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	return d, nil
}

// webOptions wires the home page and the password API to the real
// pieces: the password service and the login lockouts (per number and per
// client IP) that XMPP uses too.
func (d *Daemon) webOptions(cert tls.Certificate, secret []byte, reg *prometheus.Registry) web.Options {
	client := web.ClientInfo{Host: d.cfg.Domain}
	vcards := vcard.New(d.Server.Router(), d.DB)
	for _, l := range []struct {
		which  string
		direct bool
	}{{"c2s", false}, {"direct", true}} {
		if _, port, err := net.SplitHostPort(d.Addr(l.which)); err == nil {
			if p, err := strconv.Atoi(port); err == nil {
				client.Ports = append(client.Ports, web.ClientPort{Port: p, DirectTLS: l.direct})
			}
		}
	}
	if d.cfg.TLSCertFile == "" {
		client.Fingerprint = tlscert.Fingerprint(cert) // self-signed
	}
	var app web.AppAPI // a nil *sms.PINs would be a non-nil interface
	if d.PINs != nil {
		app = d.PINs
	}
	return web.Options{
		App:            app,
		Health:         d.health,
		Gatherer:       reg,
		MetricsAllow:   d.cfg.MetricsAllow,
		PublicURL:      d.cfg.PublicURL,
		TrustedProxies: d.cfg.TrustedProxies,
		Domain:         d.cfg.Domain,
		Parser:         d.parser,
		Passwords:      d.Passwords,
		Accounts:       d.DB,
		Lockout:        d.Lockout,
		IPLockout:      d.ipLockout,
		Offline:        d.DB,
		SetFullName:    vcards.SetFullName,
		FullName:       vcards.FullName,
		ChangePassword: d.accounts.SetPassword,
		PromotePending: d.accounts.PromotePending,
		SecretKey:      secret,
		Client:         client,
		Log:            d.log,
		WebSocket:      d.Server.ServeWebSocket,
		Upload:         d.Uploads,
		WebClient:      d.cfg.WebClient,
		Tickets:        d.DB,
		Links:          d.DB,
		Discovery:      d.DB,
	}
}

// The store keeps what the modules declare they need.
var (
	_ roster.Store   = (*storage.DB)(nil)
	_ vcard.Store    = (*storage.DB)(nil)
	_ private.Store  = (*storage.DB)(nil)
	_ blocking.Store = (*storage.DB)(nil)
)

var _ phonebook.Store = (*storage.DB)(nil)

// registerModules loads the feature modules on the server's router; disco
// reads what the others registered when it is first asked.
func (d *Daemon) registerModules() error {
	srv := d.Server
	r := srv.Router()
	d.roster = rostermod.New(d.DB, r, d.log)
	d.roster.MaxItems = d.cfg.RosterMax
	presences := presence.New(r, d.roster, d.log)
	d.blocking = blocking.New(r, d.DB)
	// Blocking and unblocking tell only the contacts that may see the
	// user's presence (XEP-0191 §3.3, §3.4): those subscribed to it.
	d.blocking.PresenceAllowed = func(ctx context.Context, user, contact jid.JID) bool {
		it, err := d.DB.RosterItem(ctx, user.Localpart(), contact.Bare().String())
		return err == nil && roster.HasFrom(it)
	}
	// Requests stored before their sender was blocked are not delivered.
	presences.Blocked = d.blocking.Blocked
	d.SM = &sm.Module{ResumeTimeout: d.cfg.SMResumeTimeout, QueueLimit: d.cfg.SMQueueLimit, Notice: d.Offline.Notice, Log: d.log}
	d.carbons = carbons.New()
	peps := pep.New(r, d.DB, d.DB, d.log)
	peps.MaxItems, peps.MaxItemBytes = d.cfg.PEPMaxItems, d.cfg.PEPMaxItemBytes
	vcards := vcard.New(r, d.DB)
	avatars := avatar.New(r, vcards, peps, d.DB, d.log)
	peps.Observe(avatars)
	vcards.Observe(avatars.VCardSet)
	privates := private.New(r, d.DB)
	marks := bookmarks.New(r, peps, d.DB, d.log)
	peps.Observe(marks)
	privates.Observe(marks.PrivateSet)
	rooms, err := d.groups(r)
	if err != nil {
		return err
	}
	// A recycled or released number leaves its groups (SPEC.md "Accounts").
	d.accounts.Groups = rooms
	phones := phonebook.New(r, d.parser, d.DB)
	phones.PerDay = d.cfg.DiscoveryPerDay
	d.Archive = mam.New(mam.Config{Store: d.DB, Retention: d.cfg.ArchiveRetention, Log: d.log, Exclusive: d.exclusive})
	d.Push = pushmod.New(pushmod.Config{Store: d.DB, Log: d.log})
	// A message the hibernating stream had fetched from the archive is
	// left there at the timeout: only its notice goes out.
	d.SM.Archived = d.Archive.Archived
	return srv.Load(
		d.register,
		ping.New(r),
		version.New(Version),
		xmpptime.New(),
		vcards,
		privates,
		d.blocking,
		d.roster,
		presences,
		d.Archive,
		d.Push,
		d.carbons,
		peps,
		avatars,
		marks,
		uploadmod.New(r, d.Uploads, d.cfg.UploadMaxFileSize),
		extdisco.New(r, d.TURN),
		d.Offline,
		d.SM,
		csi.New(),
		rooms,
		router.ModuleFunc(func(h *router.Hooks) error {
			h.OnSession(router.Available, 0, func(ctx context.Context, s *router.Session) {
				ctx, cancel := r.StoreContext(ctx)
				defer cancel()
				d.Notices.CameOnline(ctx, auth.Number(s.JID().Localpart()))
			})
			return nil
		}),
		phones,
		d.clusterLink(),
		disco.New(r, "Dialtone"),
	)
}

// soloOutbox is the store's outbox without its claims (sms.Claimer), for
// the embedded SQLite database, which no other server can share: its node
// is the only sender, and claims would only cost writes. On PostgreSQL
// the claims stay even without NATS: two servers may share the database
// (and its outbox) without forming a cluster, and a node that restarts
// releases its own claims first (sms.Sender.Node).
type soloOutbox struct {
	sms.Outbox
	sms.OutboxCounter
	sms.OutboxPruner
}

// clusterLink is the module that announces this node's sessions to the
// others; nothing for a single node.
func (d *Daemon) clusterLink() router.Module {
	if d.Cluster == nil {
		return router.ModuleFunc(func(*router.Hooks) error { return nil })
	}
	return d.Cluster
}

// shareCaches makes the caches of account data the modules keep per node
// follow changes made on other nodes of a cluster: a blocklist changed on
// one node, an account recycled through another.
func (d *Daemon) shareCaches() {
	if d.Cluster == nil {
		return
	}
	forget := func(f interface{ Forget(jid.JID) }) func(string) {
		return func(key string) {
			if j, err := jid.Parse(key); err == nil {
				f.Forget(j)
			}
		}
	}
	d.Cluster.OnInvalidate("blocking", forget(d.blocking))
	d.blocking.Changed = func(owner jid.JID) { d.Cluster.Invalidate("blocking", owner.Bare().String()) }
	local := d.accounts.Blocks
	d.Cluster.OnInvalidate("account", forget(local))
	d.accounts.Blocks = forgetAll{local, clusterForget{d.Cluster, "account"}}
	// Carbons for a resource on another node are copied where the message
	// is routed: its mirror there carries the flag.
	d.carbons.Changed = func(s *router.Session, on bool) { d.Cluster.SetAttr(s, "carbons", onOff(on)) }
	d.Cluster.OnAttr("carbons", func(s *router.Session, v string) { d.carbons.SetMirror(s, v == "1") })
	// The notice windows close on the one node that runs their job: a
	// window opened on another node wakes it, or it would close up to a
	// minute late.
	d.Notices.Opened = func() { d.Cluster.Invalidate("notice windows", "") }
	d.Cluster.OnInvalidate("notice windows", func(string) { d.Notices.Poke() })
}

func onOff(on bool) string {
	if on {
		return "1"
	}
	return ""
}

// resumeAcrossNodes lets a client resume (XEP-0198) on this node a session
// that hibernated on another node of the cluster, and another node take
// over one that hibernated here.
func (d *Daemon) resumeAcrossNodes() error {
	if d.Cluster == nil {
		return nil
	}
	// A node that stops keeps its resumable sessions for a moment, for
	// their clients to resume them on the nodes that stay.
	d.SM.ShutdownGrace = shutdownHandoff
	d.SM.Remote = func(ctx context.Context, previd, owner string, h uint32) (sm.Handover, bool) {
		b, ok := d.Cluster.Ask(ctx, "sm", sm.Request{Previd: previd, Owner: owner, H: h}.Marshal())
		if !ok {
			return sm.Handover{}, false
		}
		ho, err := sm.ParseHandover(b)
		return ho, err == nil
	}
	return d.Cluster.OnAsk("sm", func(from string, q []byte) ([]byte, bool) {
		req, err := sm.ParseRequest(q)
		if err != nil {
			return nil, false
		}
		ho, ok := d.SM.HandOver(req.Previd, req.Owner, req.H, func(full jid.JID, presence *router.Stanza) {
			d.Cluster.Moved(full.String(), from, presence)
		})
		if !ok {
			return nil, false
		}
		return ho.Marshal(), true
	})
}

// shutdownHandoff is how long a stopping node of a cluster keeps the
// resumable sessions it ends for their clients to resume elsewhere: a
// client reconnects at once, so a few seconds do.
const shutdownHandoff = 5 * time.Second

// clusterForget tells the other nodes to forget an account's cached data.
type clusterForget struct {
	c     *cluster.Cluster
	topic string
}

// Forget implements account.BlockCache.
func (f clusterForget) Forget(bare jid.JID) { f.c.Invalidate(f.topic, bare.Bare().String()) }

// health is /healthz: the store answers and, in a cluster, the NATS link
// is up (a node cut off from the others cannot route to them).
func (d *Daemon) health(ctx context.Context) error {
	if err := d.DB.Ping(ctx); err != nil {
		return err
	}
	if d.Cluster != nil {
		return d.Cluster.Health(ctx)
	}
	return nil
}

// groups is the group chat service at groups.DOMAIN; invitations of
// numbers without a session are kept and texted like messages.
func (d *Daemon) groups(r router.Routing) (*muc.Module, error) {
	m := muc.New(r, d.DB)
	m.MaxOccupants, m.RoomsPerAccount = d.cfg.MUCMaxOccupants, d.cfg.MUCRoomsPerAccount
	m.Invites, m.Log = d.invitations, d.log
	if d.Cluster == nil {
		return m, nil
	}
	// Each group runs on one node: stanzas for it go there.
	m.Cluster = d.Cluster
	d.Cluster.OnForward(m.Forwarded)
	d.Cluster.OnChange(m.NodesChanged)
	// The list of groups and the groups-per-account limit count every
	// node's groups: each node is asked about those it runs.
	m.Others = func(ctx context.Context, q []byte) [][]byte { return d.Cluster.AskAll(ctx, "muc", q) }
	err := d.Cluster.OnAsk("muc", func(_ string, q []byte) ([]byte, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), d.cfg.StoreTimeout)
		defer cancel()
		return m.Answer(ctx, q), true
	})
	return m, err
}

// forgetAll drops what each module caches of an account (account.BlockCache).
type forgetAll []interface{ Forget(jid.JID) }

// Forget implements account.BlockCache.
func (f forgetAll) Forget(bare jid.JID) {
	for _, c := range f {
		c.Forget(bare)
	}
}

func listen(name, addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return l, nil
}

// Addr returns the bound address of a listener: "c2s", "direct", "http" or "s2s"
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
	case "s2s":
		l = d.s2s
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
	errc := make(chan error, 5)
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
		err := admin.Serve(actx, d.cfg.AdminSocket, adminHandler{d.Server, d.Sender, d.accounts}, d.log)
		if err != nil && actx.Err() == nil {
			return fmt.Errorf("XMPPD_ADMIN_SOCKET: %w", err)
		}
		return nil
	})
	bctx, cancelBlocking := context.WithCancel(context.Background())
	defer cancelBlocking()
	// Stopped after the sessions, before the store.
	wg.Go(func() {
		if err := d.Sender.Run(bctx); err != nil {
			d.log.Error("SMS worker stopped", "err", err)
		}
	})
	// Each node sends from the shared outbox (it claims what it sends);
	// the jobs below run on one node of a cluster at a time.
	wg.Go(func() { d.exclusive(bctx, "unclaimed account sweeper", d.sweeper.Run) })
	wg.Go(func() { d.exclusive(bctx, "notice windows", d.Notices.Run) })
	wg.Go(func() { d.exclusive(bctx, "shared limits prune", d.pruneLimits) })
	wg.Go(func() { d.Lockout.Run(bctx) })
	wg.Go(func() { d.ipLockout.Run(bctx) })
	wg.Go(func() { d.offlineGroup.Run(bctx) }) // what is queued is written before the store closes
	wg.Go(func() {
		if err := d.Notices.Minter.Run(bctx); err != nil && bctx.Err() == nil {
			d.log.Error("passwords for new accounts: no more can be made", "err", err)
		}
	})
	wg.Go(func() { d.exclusive(bctx, "upload expiry", d.Uploads.Run) })
	if d.s2s != nil {
		serve(func() error { return d.fed.Serve(d.s2s) })
	}
	if d.Cluster != nil {
		d.Cluster.Start()
	}
	d.log.Info("xmppd started", "domain", d.cfg.Domain, "c2s", d.Addr("c2s"), "c2s_direct_tls", d.Addr("direct"),
		"http", d.Addr("http"), "s2s", d.Addr("s2s"), "store", d.DB.Driver(), "version", Version)

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
	if d.fed != nil {
		if err := d.fed.Shutdown(sctx); err != nil {
			d.log.Error("federation links did not end in time", "err", err)
		}
	}
	if err := d.Server.Shutdown(sctx); err != nil {
		d.log.Error("sessions did not end in time", "err", err)
	}
	if d.Cluster != nil {
		// After the sessions (their unbinds went out), before the store
		// (what another node never took is stored offline).
		d.Cluster.Close()
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
	for _, l := range []net.Listener{d.c2s, d.direct, d.httpL, d.s2s} {
		if l != nil {
			l.Close()
		}
	}
	if d.Cluster != nil {
		d.Cluster.Close()
	}
	if d.DB != nil {
		d.DB.Close()
	}
}

// federate routes stanzas for other domains through the federation and
// binds the s2s listener, unless XMPPD_S2S_ADDR is empty.
func (d *Daemon) federate(reg prometheus.Registerer) error {
	cfg := d.cfg
	dialback, err := xmppd.LoadDialbackSecret(cfg.S2SDialbackSecret, cfg.DataDir)
	if err == nil && cfg.S2SDialbackSecret == "" {
		// The nodes of a cluster answer each other's dialback checks.
		ctx, cancel := context.WithTimeout(context.Background(), cfg.StoreTimeout)
		dialback, err = secret.Shared(ctx, d.DB, secret.SharedDialbackName, dialback)
		cancel()
	}
	if err != nil {
		return fmt.Errorf("XMPPD_S2S_DIALBACK_SECRET: %w", err)
	}
	d.fed, err = xmppd.NewFederation(d.Server, xmppd.FederationConfig{
		Routes:          cfg.S2SRoutes,
		AllowPlaintext:  !cfg.S2SRequireTLS,
		DialbackSecret:  dialback,
		InsecureDomains: cfg.S2SInsecureDomains,
		IdleTimeout:     cfg.S2SIdleTimeout,
		Rate:            cfg.S2SRate,
		Registerer:      reg,
	})
	if err != nil {
		return fmt.Errorf("XMPPD_S2S_ROUTES: %w", err)
	}
	if cfg.S2SAddr == "" {
		return nil
	}
	if d.s2s, err = listen("XMPPD_S2S_ADDR", cfg.S2SAddr); err != nil {
		return err
	}
	return nil
}

// clustered reports whether other nodes may share the store: PostgreSQL.
// Then limits are counted in it and periodic jobs run on one node at a
// time (SPEC.md "Several servers (clustering)").
func (d *Daemon) clustered() bool { return d.DB.Driver() == "postgres" }

// sharedLimits is where the password request limits are counted: the
// store for a cluster, nil (memory) for a single node.
func (d *Daemon) sharedLimits() auth.SharedLimits {
	if d.clustered() {
		return d.DB
	}
	return nil
}

// jobRetry is how often a node that does not run a cluster job checks
// whether the node that did is still there.
const jobRetry = 5 * time.Second

// exclusive runs a periodic job until ctx is done, on one node of the
// cluster at a time (storage.DB.RunExclusive); on SQLite it just runs.
func (d *Daemon) exclusive(ctx context.Context, name string, job func(context.Context)) {
	running := d.jobs.WithLabelValues(name)
	d.DB.RunExclusive(ctx, name, jobRetry, func(ctx context.Context) {
		running.Set(1)
		defer running.Set(0)
		job(ctx)
	})
}

// sweeperMetrics count this node's sweeps of unclaimed accounts: in a
// cluster only the node that runs the sweeper counts any.
type sweeperMetrics struct{ sweeps, released prometheus.Counter }

func newSweeperMetrics(reg prometheus.Registerer) sweeperMetrics {
	m := sweeperMetrics{
		sweeps: prometheus.NewCounter(prometheus.CounterOpts{Name: "xmppd_unclaimed_sweeps_total",
			Help: "Sweeps of unclaimed accounts this node ran."}),
		released: prometheus.NewCounter(prometheus.CounterOpts{Name: "xmppd_unclaimed_released_total",
			Help: "Unclaimed accounts this node released (XMPPD_UNCLAIMED_ACCOUNT_TTL)."}),
	}
	reg.MustRegister(m.sweeps, m.released)
	return m
}

// countedReleaser is the store's release of unclaimed accounts, counted.
type countedReleaser struct {
	auth.Releaser
	m sweeperMetrics
}

func (c countedReleaser) ReleaseUnclaimed(ctx context.Context, touchedBefore time.Time, batch int) ([]auth.Number, error) {
	released, err := c.Releaser.ReleaseUnclaimed(ctx, touchedBefore, batch)
	c.m.sweeps.Inc()
	c.m.released.Add(float64(len(released)))
	return released, err
}

// pruneLimits removes the expired shared limits every hour.
func (d *Daemon) pruneLimits(ctx context.Context) {
	if !d.clustered() {
		return
	}
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		sctx, cancel := context.WithTimeout(ctx, d.cfg.StoreTimeout)
		if err := d.DB.PruneLimits(sctx, time.Now()); err != nil && ctx.Err() == nil {
			d.log.Error("shared limits prune", "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// accountLifecycle makes the SMS worker, the password service, the
// unclaimed-account sweeper and the in-band password change (SPEC.md
// "Accounts").
func (d *Daemon) accountLifecycle(parser *auth.NumberParser, secret []byte, reg prometheus.Registerer) error {
	cfg := d.cfg
	gw, err := sms.NewGateway(cfg.Gateway(), d.log)
	if err != nil {
		return fmt.Errorf("XMPPD_SMS_GATEWAY: %w", err)
	}
	d.parser = parser
	d.accounts = &account.Lifecycle{Domain: cfg.Domain, Store: d.DB, Sessions: d.Server, StoreTimeout: cfg.StoreTimeout, Log: d.log}
	var outbox sms.Outbox = d.DB
	if cfg.DatabaseURL == "" {
		outbox = soloOutbox{d.DB, d.DB, d.DB}
	}
	d.Sender = &sms.Sender{Outbox: outbox, Node: cfg.NodeName, Gateway: gw, Key: secret, Log: d.log, Metrics: sms.NewMetrics(reg)}
	d.Passwords = &sms.Passwords{
		Domain:        cfg.Domain,
		Length:        cfg.PasswordLength,
		Parser:        parser,
		Store:         d.DB,
		Key:           secret,
		Interval:      cfg.PasswordSMSInterval,
		PerDay:        cfg.PasswordSMSPerDay,
		PerIPHour:     cfg.PasswordRequestsPerIPHour,
		PerPrefixHour: cfg.PasswordRequestsPerPrefixHour,
		RecycleAfter:  cfg.RecycleAfter,
		Recycle:       d.accounts.Recycle,
		OnIssued:      d.accounts.CloseSessions,
		Wake:          d.Sender.Wake,
		Throttled:     sms.NewThrottledCounter(reg),
		Shared:        d.sharedLimits(),
		Links:         sms.NewLoginLinks(cfg.PublicURL, cfg.LoginLinkTTL, d.DB),
		Log:           d.log,
	}
	if cfg.AppAPI {
		d.PINs = &sms.PINs{Passwords: d.Passwords, Store: d.DB,
			PerInstallationDay: sms.DefaultPINsPerInstallationDay, AppHash: cfg.AppSMSHash}
	}
	d.sweeper = &auth.Sweeper{Store: countedReleaser{d.DB, newSweeperMetrics(reg)}, TTL: cfg.UnclaimedAccountTTL, OnRelease: d.accounts.Forget, Log: d.log}
	d.jobs = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "xmppd_job_running",
		Help: "1 for each once-per-cluster job (unclaimed account sweeper, notice windows, upload expiry, shared limits prune) this node runs now."}, []string{"job"})
	reg.MustRegister(d.jobs)
	d.register = register.New(d.Server.Router(), parser, d.accounts.ChangePassword)
	return nil
}

// promotePending is the SASL Promote hook, which the server is built
// with before the account rules are.
func (d *Daemon) promotePending(ctx context.Context, n auth.Number, pending auth.Credentials) (int64, error) {
	return d.accounts.PromotePending(ctx, n, pending)
}

// passwordLength is the length of generated passwords for XMPPD_PASSWORD_LENGTH
// (0: the default).
func passwordLength(n int) int {
	if n == 0 {
		return sms.DefaultPasswordLength
	}
	return n
}

// adminHandler serves the admin socket: kicks by the server, wakes by the
// SMS worker.
type adminHandler struct {
	*xmppd.Server
	sender   *sms.Sender
	accounts *account.Lifecycle
}

// Forget drops what the server keeps of an account xmppctl deleted or
// released: its sessions, files, cached block list and group memberships.
func (h adminHandler) Forget(ctx context.Context, number string) error {
	h.accounts.Forget(ctx, auth.Number(number))
	return nil
}

// Wake nudges the SMS worker after xmppctl queued an SMS.
func (h adminHandler) Wake() { h.sender.Wake() }

// offlineMessages makes the offline queue and the notices that text its
// receivers (SPEC.md "Offline messages", "SMS texts").
func (d *Daemon) offlineMessages(parser *auth.NumberParser, secret []byte) {
	cfg := d.cfg
	_, voice := d.Sender.Gateway.(sms.VoiceGateway)
	keeper := &account.Offline{
		Domain:       cfg.Domain,
		Store:        d.DB,
		Bytes:        cfg.OfflineBytes,
		StoreTimeout: cfg.StoreTimeout,
		HasSession:   func(bare jid.JID) bool { return len(d.Server.Sessions(bare)) > 0 },
	}
	d.Notices = &sms.Notices{
		Domain:                 cfg.Domain,
		PasswordLength:         cfg.PasswordLength,
		Minter:                 auth.NewMinter(passwordLength(cfg.PasswordLength), 0),
		Store:                  d.DB,
		Parser:                 parser,
		Voice:                  voice,
		Key:                    secret,
		Preview:                cfg.NoticePreview,
		Window:                 cfg.NoticeWindow,
		PerDay:                 cfg.NoticesPerDay,
		NewNumbersPerSenderDay: cfg.NoticeNewNumbersPerSenderDay,
		// Beyond this one nothing is stored (SPEC.md "SMS texts").
		StoredNewNumbersPerSenderDay: cfg.NewNumbersPerSenderDay,
		IsOnline:                     keeper.IsOnline,
		Wake:                         d.Sender.Wake,
		Log:                          d.log,
		Links:                        sms.NewLoginLinks(cfg.PublicURL, cfg.LoginLinkTTL, d.DB),
		StoreTimeout:                 cfg.StoreTimeout,
	}
	keeper.Notices = d.Notices
	d.invitations = &account.Invitations{Domain: cfg.Domain, Store: d.DB, Notices: d.Notices, StoreTimeout: cfg.StoreTimeout}
	d.Offline = &offlinemod.Queue{
		Store:    d.DB,
		Accounts: d.DB,
		Server:   d.Server.Router(),
		Limit:    cfg.OfflineLimit,
		Keep: func(ctx context.Context, m offline.Message, s offline.Stored, limit int) (offline.Kept, error) {
			k, err := keeper.Keep(ctx, account.Message{Message: m, From: s.From, Body: s.Body}, limit)
			return offline.Kept{ID: k.ID, Warning: k.Warning}, err
		},
		Notify: func(ctx context.Context, s offline.Stored) error {
			m := account.Message{Message: offline.Message{Owner: string(s.Owner), From: s.From.String()}, From: s.From, Body: s.Body}
			_, err := keeper.Notice(ctx, m)
			return err
		},
		Log: d.log,
	}
	// Messages to offline receivers are kept in groups of one
	// transaction, off the senders' readers (issue 15).
	d.offlineGroup = &account.Group{Offline: keeper, Notices: d.Notices,
		InTx: func(ctx context.Context, fn func(tx account.TxStore) error) error {
			return d.DB.InTx(ctx, func(tx *storage.DB) error { return fn(tx) })
		}}
	d.Offline.Group = func(ctx context.Context, m offline.Message, s offline.Stored, limit int, done func(offline.Kept, error)) {
		d.offlineGroup.Keep(ctx, account.Message{Message: m, From: s.From, Body: s.Body}, limit, func(k account.Kept, err error) {
			done(offline.Kept{ID: k.ID, Warning: k.Warning}, err)
		})
	}
}
