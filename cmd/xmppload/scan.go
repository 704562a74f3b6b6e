package main

import (
	"bytes"
	"errors"
	"math"
	"math/bits"
	"strconv"
)

// Messages of the route scenario carry id='dlt-SEQ' (SEQ counts from 0 per
// sender) and a body "tUNIXNANO;" padded with 'x' to the body size. The
// receiver finds them in the raw bytes of the stream: no XML decoding.
const idMarker = "dlt-"

// appendMessage appends one chat message to b.
func appendMessage(b []byte, to string, seq uint64, nowNano int64, size int) []byte {
	return appendTyped(b, "chat", to, seq, nowNano, size)
}

// appendTyped appends one message of type typ to b.
func appendTyped(b []byte, typ, to string, seq uint64, nowNano int64, size int) []byte {
	b = append(b, "<message type='"...)
	b = append(b, typ...)
	b = append(b, "' to='"...)
	b = append(b, to...)
	b = append(b, "' id='"+idMarker...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, "'><body>t"...)
	n := len(b)
	b = strconv.AppendInt(b, nowNano, 10)
	b = append(b, ';')
	for pad := size - (len(b) - n + 1); pad > 0; pad-- {
		b = append(b, 'x')
	}
	return append(b, "</body></message>"...)
}

// scanner finds the route messages in a stream's raw bytes. Feed it what
// the connection reads; it keeps only an unfinished message.
type scanner struct {
	buf []byte
	// maxBuf bounds what is kept while waiting for the end of one message.
	maxBuf int
}

var errScanOverflow = errors.New("message marker without end within the buffer limit")

// seen is one message found: its sequence number, the timestamp of its
// body, and whether it came back as an error.
type seen struct {
	seq     uint64
	sentAt  int64
	isError bool
}

// feed scans data and calls fn for every complete message found.
func (s *scanner) feed(data []byte, fn func(seen)) error {
	s.buf = append(s.buf, data...)
	b := s.buf
	consumed := 0
	for {
		i := bytes.Index(b[consumed:], []byte(idMarker))
		if i < 0 {
			// Keep the last tag start (the marker may follow in the
			// next read), or a tail that might be the start of a marker.
			keep := min(len(idMarker)-1, len(b)-consumed)
			if lt := bytes.LastIndexByte(b[consumed:], '<'); lt >= 0 && len(b)-consumed-lt <= 512 {
				keep = len(b) - consumed - lt
			}
			consumed = len(b) - keep
			break
		}
		i += consumed
		end := bytes.Index(b[i:], []byte("</body>"))
		if end < 0 {
			// Keep the message from its start tag, when in the buffer.
			if st := bytes.LastIndex(b[consumed:i], []byte("<message")); st >= 0 {
				consumed += st
			} else {
				consumed = i
			}
			break
		}
		end += i
		m, ok := parseMessage(b, i, end)
		if ok {
			fn(m)
		}
		consumed = end + len("</body>")
	}
	// Slide what is left to the front.
	rest := copy(s.buf, s.buf[consumed:])
	s.buf = s.buf[:rest]
	if s.maxBuf > 0 && len(s.buf) > s.maxBuf {
		return errScanOverflow
	}
	return nil
}

// parseMessage reads the sequence after the marker at i and the timestamp
// of the body that ends at end. The stanza is an error when its start tag
// (from the last "<message" before i) says type='error'.
func parseMessage(b []byte, i, end int) (seen, bool) {
	var m seen
	j := i + len(idMarker)
	k := j
	for k < end && b[k] >= '0' && b[k] <= '9' {
		k++
	}
	seq, err := strconv.ParseUint(string(b[j:k]), 10, 64)
	if err != nil {
		return m, false
	}
	m.seq = seq
	body := bytes.LastIndex(b[k:end], []byte("<body>"))
	if body >= 0 {
		p := k + body + len("<body>")
		if p < end && b[p] == 't' {
			q := p + 1
			for q < end && b[q] >= '0' && b[q] <= '9' {
				q++
			}
			m.sentAt, _ = strconv.ParseInt(string(b[p+1:q]), 10, 64)
		}
	}
	if st := bytes.LastIndex(b[:i], []byte("<message")); st >= 0 {
		tagEnd := end
		if gt := bytes.IndexByte(b[i:end], '>'); gt >= 0 {
			tagEnd = i + gt
		}
		tag := b[st:tagEnd]
		m.isError = bytes.Contains(tag, []byte("type='error'")) || bytes.Contains(tag, []byte(`type="error"`))
	}
	return m, true
}

// seqSet records which sequence numbers arrived, to count duplicates.
type seqSet struct{ words []uint64 }

// add reports whether seq is new.
func (s *seqSet) add(seq uint64) bool {
	w := seq / 64
	if w >= uint64(len(s.words)) {
		if w > 1<<26 { // 4 billion messages: not from a bounded run
			return false
		}
		n := make([]uint64, max(w+1, uint64(2*len(s.words))))
		copy(n, s.words)
		s.words = n
	}
	bit := uint64(1) << (seq % 64)
	if s.words[w]&bit != 0 {
		return false
	}
	s.words[w] |= bit
	return true
}

// hist is a log-linear histogram of durations in microseconds: exact below
// 64 µs, then 32 buckets per power of two (about 3% error).
type hist struct {
	counts [64 * 32]uint64
	n      uint64
	max    uint64
	sum    uint64
}

const subBits = 5

func bucketOf(v uint64) int {
	if v < 1<<(subBits+1) {
		return int(v)
	}
	e := bits.Len64(v) - subBits - 1 // >= 1
	return e<<subBits + int(v>>uint(e))
}

// bucketLow is the smallest value of bucket i.
func bucketLow(i int) uint64 {
	if i < 1<<(subBits+1) {
		return uint64(i)
	}
	e := i>>subBits - 1
	m := uint64(i - e<<subBits)
	return m << uint(e)
}

func (h *hist) add(us uint64) {
	i := bucketOf(us)
	if i >= len(h.counts) {
		i = len(h.counts) - 1
	}
	h.counts[i]++
	h.n++
	h.sum += us
	if us > h.max {
		h.max = us
	}
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// quantile returns the value at q (0..1): the middle of its bucket, capped
// at the maximum seen.
func (h *hist) quantile(q float64) uint64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank == 0 {
		rank = 1
	}
	var acc uint64
	for i, c := range h.counts {
		acc += c
		if acc >= rank {
			lo, hi := bucketLow(i), bucketLow(i+1)
			v := lo + (hi-lo)/2
			if hi-lo <= 1 {
				v = lo
			}
			return min(v, h.max)
		}
	}
	return h.max
}
