package s2s

import (
	"encoding/binary"
	"net"
	"strings"
	"testing"
)

// serveDNS answers, on a loopback UDP port, A queries for the names in
// hosts and _xmpp-server._tcp SRV queries for them, NXDOMAIN for anything
// else (_xmpps-server included); it returns the port. It is ejabberd's DNS
// (testdata/inetrc.tmpl). ejabberd 23.01 looks up only the SRV records
// with inet_res and resolves their target, or when there is none the
// domain itself, with net:getaddrinfo, the C library's resolver, which
// knows nothing of the .test domains. So the SRV answer's target is the
// address itself, written as a name ("127.0.0.4."), which getaddrinfo
// takes as a numeric address: port 5269 at that address.
func serveDNS(t *testing.T, hosts map[string]string) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if reply := dnsAnswer(buf[:n], hosts); reply != nil {
				pc.WriteTo(reply, addr)
			}
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

func dnsAnswer(q []byte, hosts map[string]string) []byte {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:]) != 1 {
		return nil
	}
	var labels []string
	i := 12
	for i < len(q) && q[i] != 0 {
		l := int(q[i])
		if l > 63 || i+1+l > len(q) {
			return nil
		}
		labels = append(labels, string(q[i+1:i+1+l]))
		i += 1 + l
	}
	if i+5 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[i+1:])
	question := q[12 : i+5]
	name := strings.ToLower(strings.Join(labels, "."))
	srvOf, isSRV := strings.CutPrefix(name, "_xmpp-server._tcp.")
	ip, known := hosts[name]
	if isSRV {
		_, known = hosts[srvOf]
	}
	out := append([]byte{}, q[:2]...) // id
	flags := uint16(0x8400 | 0x0100)  // response, authoritative, recursion desired
	if !known {
		flags |= 3 // NXDOMAIN
	}
	out = binary.BigEndian.AppendUint16(out, flags)
	answers := uint16(0)
	if known && (qtype == 1 && !isSRV || qtype == 33 && isSRV) {
		answers = 1
	}
	out = binary.BigEndian.AppendUint16(out, 1)
	out = binary.BigEndian.AppendUint16(out, answers)
	out = append(out, 0, 0, 0, 0)
	out = append(out, question...)
	switch {
	case answers == 1 && isSRV: // priority 0, weight 0, port 5269, target the address
		var target []byte
		for _, l := range strings.Split(hosts[srvOf], ".") {
			target = append(append(target, byte(len(l))), l...)
		}
		target = append(target, 0)
		out = append(out, 0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 60)
		out = binary.BigEndian.AppendUint16(out, uint16(6+len(target)))
		out = append(out, 0, 0, 0, 0, 0x14, 0x95)
		out = append(out, target...)
	case answers == 1:
		out = append(out, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4)
		out = append(out, net.ParseIP(ip).To4()...)
	}
	return out
}
