// Dialtone's set-up of Converse.js for /chat (SPEC.md "Web client and
// one-tap login"). The page carries its settings as JSON in a data block,
// since its Content-Security-Policy runs no inline script. Converse does
// two things differently here:
//
//  - a number typed into the login form, in any form people write it
//    (+82 10-1234-5678, 010-1234-5678), becomes the account's address
//    (+821012345678@DOMAIN) by asking the server (GET /chat/number)
//    before the login, so that the session has its canonical JID;
//  - a browser logged in on the home page, or through a one-tap link,
//    logs in with a ticket from POST /chat/credentials instead of a
//    password: a ticket works once and for a minute or two, so a
//    reconnect fetches a new one, and none is ever stored.
//
// Loaded as a module after converse.min.js, which defines window.converse.

const config = JSON.parse(document.getElementById('dialtone-config').textContent);

function escapeRegExp(s) {
    return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

// canonical matches the JIDs of accounts: +E.164 digits at the domain.
const canonical = new RegExp('^\\+[0-9]{2,15}@' + escapeRegExp(config.domain) + '$');

// lookUp asks the server for the JID of a number as typed: {jid} or {error}.
async function lookUp(typed) {
    try {
        const res = await fetch(config.numberURL + '?phone=' + encodeURIComponent(typed), {
            credentials: 'same-origin',
            headers: { Accept: 'application/json' },
        });
        const body = await res.json();
        if (res.ok && body.jid) return { jid: body.jid };
        return { error: body.error || 'That does not look like a phone number.' };
    } catch (e) {
        return { error: 'The server cannot be reached. Check your connection and try again.' };
    }
}

// ticket fetches a single-use login for the browser's web session:
// {jid, password}, or null when the session is gone.
async function ticket() {
    try {
        const res = await fetch(config.credentialsURL, {
            method: 'POST',
            credentials: 'same-origin',
            headers: { Accept: 'application/json', 'X-CSRF-Token': config.csrf },
        });
        if (!res.ok) return null;
        const body = await res.json();
        return body.jid && body.password ? body : null;
    } catch (e) {
        return null;
    }
}

// relabel makes Converse's login form ask for a phone number. Its texts
// are Converse's own (English is built in, with no translation file to
// change), so the form is adjusted in place whenever it is drawn.
function relabel(root) {
    const input = root.querySelector('#converse-login-jid');
    if (!input || input.dataset.dialtone) return;
    input.dataset.dialtone = '1';
    input.type = 'tel';
    input.inputMode = 'tel';
    input.autocomplete = 'username';
    input.placeholder = 'Phone number';
    const label = root.querySelector('label[for="converse-login-jid"]');
    if (label) label.textContent = 'Phone number';
}

converse.plugins.add('dialtone', {
    initialize() {
        const { api } = this._converse;
        const { Strophe } = converse.env;

        // Converse's own footer (full-screen mode, logged out) shows its
        // sponsors' logos from their sites: nothing may load from another
        // host, so it says what the client is, with its licence, instead.
        const version = String(this._converse.VERSION_NAME || '').replace(/^v/, '');
        class Footer extends HTMLElement {
            connectedCallback() {
                if (this.childElementCount) return;
                const p = document.createElement('p');
                p.className = 'dialtone-footer';
                const a = document.createElement('a');
                a.href = config.assets + '/LICENSE';
                a.textContent = 'MPL-2.0';
                p.append('Converse.js ' + version + ', open source (', a, ')');
                this.append(p);
            }
        }
        api.elements.define('converse-footer', Footer);
        const feedback = (message) =>
            this._converse.state.connfeedback.set({ connection_status: Strophe.Status.AUTHFAIL, message });

        // The 'login' hook runs before Converse looks for credentials; a
        // handler that logs in itself says so with success.
        api.listen.on('login', async (context, payload) => {
            if (payload.success) return payload;
            const jid = payload.jid || api.settings.get('jid');
            const password = payload.password || api.settings.get('password');
            if (jid && !canonical.test(jid)) {
                // With the domain locked, Converse made "TYPED@DOMAIN" with
                // the typed text escaped as a JID node (XEP-0106).
                const typed = Strophe.unescapeNode(Strophe.getNodeFromJid(jid) || jid);
                const found = await lookUp(typed);
                if (found.error) {
                    feedback(found.error);
                    return { ...payload, success: true };
                }
                api.settings.set('jid', found.jid);
                await api.user.login(found.jid, password);
                return { ...payload, success: true };
            }
            if (!password && config.session) {
                const t = await ticket();
                if (t) {
                    await api.user.login(t.jid, t.password);
                    return { ...payload, success: true };
                }
                config.session = false; // the web session ended: the login form it is
            }
            return payload;
        });

        // The messages that waited for the owner arrive at login, with a
        // delay stamp: the conversation of the first of them opens by
        // itself, so that tapping the link in the SMS is all it takes to
        // read it.
        let opened = false;
        api.listen.on('message', (data) => {
            const a = data && data.attrs;
            if (opened || !a || !a.is_delayed || a.sender !== 'them' || !a.body || !a.contact_jid) return;
            if (!data.chatbox || data.chatbox.get('type') !== 'chatbox') return;
            opened = true;
            api.chats.open(a.contact_jid, {}, true);
        });

        // Logging out of the chat ends the web session too, or the next
        // visit would log straight back in.
        api.listen.on('logout', async () => {
            if (!config.session) return;
            config.session = false;
            try {
                await fetch(config.logoutURL, {
                    method: 'POST',
                    credentials: 'same-origin',
                    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
                    body: new URLSearchParams({ csrf: config.csrf }),
                });
            } finally {
                window.location.assign('/?bye=1');
            }
        });
    },
});

new MutationObserver(() => relabel(document)).observe(document.documentElement, { childList: true, subtree: true });

converse.initialize({
    assets_path: config.assets,
    websocket_url: config.websocketURL,
    locked_domain: config.domain,
    jid: config.jid || undefined,
    auto_login: !!config.session,
    authentication: 'login',
    discover_connection_methods: false,
    allow_registration: false,
    allow_non_roster_messaging: true,
    // Never keep anything that logs in: no SCRAM keys in the browser.
    reuse_scram_keys: false,
    view_mode: 'fullscreen',
    i18n: 'en',
    locales: ['en'],
    play_sounds: false,
    show_connection_url_input: false,
    whitelisted_plugins: ['dialtone'],
    // OMEMO needs libomemo (GPL-3.0), which is not shipped.
    blacklisted_plugins: ['converse-omemo'],
    loglevel: config.debug ? 'debug' : 'warn',
});
