package main

import (
	"bufio"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// The offline scenario: the first client sends --messages chat messages
// to the second, which is offline, then a ping; the ping's answer marks
// the end (a server answers it only after what came before, so the
// messages are stored: durably on a server that acknowledges after its
// commit). Stores/s is the messages accepted over that time. Then the
// receiver logs in and every message is counted by its id.

const offlineEndID = "offline-end"

func runOffline(ctx context.Context, c *config, d *dialer, accs []account, log io.Writer) (*result, error) {
	if len(accs) < 2 {
		return nil, errors.New("offline: needs 2 accounts (--clients 2)")
	}
	sender, receiver := accs[0], accs[1]
	lctx, cancel := context.WithTimeout(ctx, loginTimeout)
	s, err := d.login(lctx, sender, "offline-sender")
	cancel()
	if err != nil {
		return nil, fmt.Errorf("offline: sender login: %w", err)
	}
	defer s.close()
	to := bareJID(receiver.jid)
	if to == "" {
		to = receiver.jid
	}
	m := &serverMeter{pid: c.pid}
	cpu0, self0 := m.read(), selfCPUTicks()
	start := time.Now()
	hardEnd := start.Add(c.duration + c.drain)
	s.conn.SetDeadline(hardEnd)
	w := bufio.NewWriterSize(s.conn, 64<<10)
	werr := make(chan error, 1)
	go func() {
		buf := make([]byte, 0, c.size+256)
		for i := range c.messages {
			buf = appendMessage(buf[:0], to, uint64(i), time.Now().UnixNano(), c.size)
			if _, err := w.Write(buf); err != nil {
				werr <- err
				return
			}
		}
		w.WriteString(`<iq type='get' id='` + offlineEndID + `'><ping xmlns='urn:xmpp:ping'/></iq>`)
		werr <- w.Flush()
	}()
	bounced, endErr := readUntilEnd(s.r)
	took := time.Since(start)
	cpu1, self1 := m.read(), selfCPUTicks()
	if err := <-werr; err != nil {
		return nil, fmt.Errorf("offline: sending: %w", err)
	}
	if endErr != nil {
		return nil, fmt.Errorf("offline: waiting for the ping's answer: %w", endErr)
	}
	r := newResult(c)
	r.MessagesEach = c.messages
	r.Size = c.size
	r.Sent = int64(c.messages)
	r.Errors = int64(bounced)
	r.Seconds = took.Seconds()
	r.StoresPerSec = float64(c.messages-bounced) / took.Seconds()
	r.ServerCPUPerMsgUs = r.setCPU(m, cpu0, cpu1, self1-self0, int64(c.messages))
	fmt.Fprintf(log, "xmppload: %d messages stored in %.3fs (%d bounced); the receiver logs in to count them\n",
		c.messages-bounced, took.Seconds(), bounced)

	got, dup, err := receiveOffline(ctx, c, d, receiver, start, c.messages-bounced)
	r.Received, r.Duplicates = int64(got), int64(dup)
	r.Lost = r.Sent - r.Received - r.Errors
	var lerr error
	if r.Lost != 0 {
		lerr = fmt.Errorf("%d message(s) lost", r.Lost)
	}
	return r, errors.Join(err, lerr, m.err)
}

// attr returns the value of the attribute local of start.
func attr(start xml.StartElement, local string) string {
	for _, a := range start.Attr {
		if a.Name.Local == local {
			return a.Value
		}
	}
	return ""
}

// readUntilEnd reads the sender's stream until the answer to the final
// ping, counting the messages that came back as errors.
func readUntilEnd(r io.Reader) (bounced int, err error) {
	dec := xml.NewDecoder(r)
	for range maxDeliveries {
		start, err := nextElement(dec)
		if err != nil {
			return bounced, err
		}
		switch {
		case start.Name.Local == "message" && attr(start, "type") == "error" && strings.HasPrefix(attr(start, "id"), idMarker):
			bounced++
		case start.Name.Local == "iq" && attr(start, "id") == offlineEndID:
			if attr(start, "type") != "result" {
				return bounced, fmt.Errorf("the ping was answered with type %q", attr(start, "type"))
			}
			return bounced, dec.Skip()
		}
		if err := dec.Skip(); err != nil {
			return bounced, err
		}
	}
	return bounced, errors.New("no answer to the ping")
}

// receiveOffline logs the receiver in, sends its presence and counts the
// messages of this run (sent after start) by id until want arrived or
// --drain passed without one; it answers the server's pings, which
// confirm a delivery (Dialtone's XEP-0199 acks of offline chunks).
func receiveOffline(ctx context.Context, c *config, d *dialer, acc account, start time.Time, want int) (got, dup int, err error) {
	q := *d
	q.quiet = true
	lctx, cancel := context.WithTimeout(ctx, loginTimeout)
	s, err := q.login(lctx, acc, "offline-receiver")
	cancel()
	if err != nil {
		return 0, 0, fmt.Errorf("offline: receiver login: %w", err)
	}
	defer s.close()
	if err := s.send(`<presence/>`); err != nil {
		return 0, 0, err
	}
	dec := xml.NewDecoder(s.r)
	var seqs seqSet
	for range maxDeliveries {
		if got >= want {
			break
		}
		s.conn.SetReadDeadline(time.Now().Add(c.drain))
		el, err := nextElement(dec)
		if err != nil {
			return got, dup, fmt.Errorf("offline: receiving (%d of %d): %w", got, want, err)
		}
		switch el.Name.Local {
		case "message":
			var body struct {
				Body string `xml:"body"`
			}
			if err := dec.DecodeElement(&body, &el); err != nil {
				return got, dup, err
			}
			seq, ok := strings.CutPrefix(attr(el, "id"), idMarker)
			n, perr := strconv.ParseUint(seq, 10, 64)
			stamp, _, _ := strings.Cut(strings.TrimPrefix(body.Body, "t"), ";")
			at, _ := strconv.ParseInt(stamp, 10, 64)
			if !ok || perr != nil || at < start.UnixNano() {
				continue // not of this run
			}
			if seqs.add(n) {
				got++
			} else {
				dup++
			}
			continue
		case "iq":
			if attr(el, "type") == "get" {
				if err := s.send(`<iq type='result' id='` + xmlEscape(attr(el, "id")) + `' to='` + xmlEscape(attr(el, "from")) + `'/>`); err != nil {
					return got, dup, err
				}
			}
		}
		if err := dec.Skip(); err != nil {
			return got, dup, err
		}
	}
	return got, dup, ctx.Err()
}

// xmlEscape escapes s for an attribute value in single quotes.
func xmlEscape(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return strings.ReplaceAll(b.String(), "'", "&apos;")
}
