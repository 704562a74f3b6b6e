package storetest

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"dialtone/archive"
	"dialtone/auth"
	"dialtone/storage"
)

// archiveTests are the contract of the message archive (archive.Store);
// Run runs them.
var archiveTests = []struct {
	name string
	fn   func(t *testing.T, db *storage.DB)
}{
	{"ArchivePaging", testArchivePaging},
	{"ArchiveFilters", testArchiveFilters},
	{"ArchiveRetention", testArchiveRetention},
	{"ArchivePrefs", testArchivePrefs},
	{"ArchiveGoesWithTheAccount", testArchiveWithAccount},
	{"ArchiveAgainstModel", testArchiveAgainstModel},
}

// archiveFill stores n messages of owner, alternating between two
// parties, one id apart from start, in one batch; it returns their ids.
func archiveFill(t *testing.T, db *storage.DB, owner string, start int64, n int) []int64 {
	t.Helper()
	msgs := make([]archive.Message, n)
	ids := make([]int64, n)
	for i := range msgs {
		with := "+15550009001@example.com"
		if i%2 == 1 {
			with = "+15550009002@example.com"
		}
		ids[i] = start + int64(i)
		msgs[i] = archive.Message{Owner: owner, ID: ids[i], With: with, WithResource: fmt.Sprintf("r%d", i%3),
			Stanza: fmt.Appendf(nil, `<message type="chat"><body>%d</body></message>`, i)}
	}
	must(t, db.AppendArchive(t.Context(), msgs))
	return ids
}

func pageIDs(page []archive.Message) []int64 {
	out := make([]int64, len(page))
	for i, m := range page {
		out[i] = m.ID
	}
	return out
}

// query runs q and checks the page's ids and whether more follow.
func query(t *testing.T, db *storage.DB, q archive.Query, want []int64, wantMore bool) []archive.Message {
	t.Helper()
	page, more, err := db.QueryArchive(t.Context(), q)
	must(t, err)
	if got := pageIDs(page); !slices.Equal(got, want) || more != wantMore {
		t.Fatalf("query %+v: ids %v more %v, want %v more %v", q, got, more, want, wantMore)
	}
	return page
}

// Pages forward from the oldest and backward from the newest cover the
// archive exactly, in order, with "more" false only at the end; another
// owner's messages never show.
func testArchivePaging(t *testing.T, db *storage.DB) {
	const owner = "+15550009000"
	base := archive.FirstID(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	ids := archiveFill(t, db, owner, base, 25)
	archiveFill(t, db, "+15550009099", base, 5)
	page := query(t, db, archive.Query{Owner: owner, Max: 10}, ids[:10], true)
	if m := page[3]; m.Owner != owner || m.With != "+15550009002@example.com" || m.WithResource != "r0" ||
		string(m.Stanza) != `<message type="chat"><body>3</body></message>` {
		t.Fatalf("message read back as %+v", m)
	}
	query(t, db, archive.Query{Owner: owner, Max: 10, After: ids[9]}, ids[10:20], true)
	query(t, db, archive.Query{Owner: owner, Max: 10, After: ids[19]}, ids[20:], false)
	// The newest page (RSM <before/>), then the one before it.
	query(t, db, archive.Query{Owner: owner, Max: 10, Last: true}, ids[15:], true)
	query(t, db, archive.Query{Owner: owner, Max: 10, Last: true, Before: ids[15]}, ids[5:15], true)
	query(t, db, archive.Query{Owner: owner, Max: 10, Last: true, Before: ids[5]}, ids[:5], false)
	// A page exactly as large as what is left says no more.
	query(t, db, archive.Query{Owner: owner, Max: 5, After: ids[19]}, ids[20:], false)
	query(t, db, archive.Query{Owner: "+15550009098", Max: 10}, []int64{}, false)
	// The same batch again (a retry) changes nothing.
	archiveFill(t, db, owner, base, 25)
	query(t, db, archive.Query{Owner: owner, Max: 100}, ids, false)
	if last, err := db.LastArchiveID(t.Context()); err != nil || last != ids[24] {
		t.Fatalf("LastArchiveID = %d, %v; want %d", last, err, ids[24])
	}
}

// with (bare, and bare with resource), id bounds (start/end, before-id,
// after-id) and ids combine.
func testArchiveFilters(t *testing.T, db *storage.DB) {
	const owner = "+15550009010"
	ids := archiveFill(t, db, owner, 1000, 12)
	query(t, db, archive.Query{Owner: owner, Max: 100, With: "+15550009002@example.com"},
		[]int64{ids[1], ids[3], ids[5], ids[7], ids[9], ids[11]}, false)
	query(t, db, archive.Query{Owner: owner, Max: 100, With: "+15550009002@example.com", WithResource: "r1"},
		[]int64{ids[1], ids[7]}, false)
	query(t, db, archive.Query{Owner: owner, Max: 2, With: "+15550009001@example.com", Last: true},
		[]int64{ids[8], ids[10]}, true)
	query(t, db, archive.Query{Owner: owner, Max: 100, After: ids[2], Before: ids[6]}, ids[3:6], false)
	query(t, db, archive.Query{Owner: owner, Max: 100, IDs: []int64{ids[4], ids[0], 1}}, []int64{ids[0], ids[4]}, false)
	query(t, db, archive.Query{Owner: owner, Max: 100, IDs: []int64{ids[4], ids[0]}, After: ids[0]}, []int64{ids[4]}, false)
}

// The retention sweep removes what is older than its bound, across
// owners, in limited steps: whole chunks first, then the messages below
// the bound of a chunk that straddles it.
func testArchiveRetention(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const a, b = "+15550009020", "+15550009021"
	archiveFill(t, db, a, 5000, 10)
	ib := archiveFill(t, db, b, 5010, 10)
	n, err := db.DeleteArchiveBefore(ctx, 5015, 1)
	must(t, err)
	if n <= 0 || n >= 10 {
		t.Fatalf("a step of one chunk removed %d messages, want some of a's 10", n)
	}
	total := n
	for i := 0; i < 10; i++ {
		n, err = db.DeleteArchiveBefore(ctx, 5015, 1)
		must(t, err)
		if n == 0 {
			break
		}
		total += n
	}
	if n != 0 || total != 15 {
		t.Fatalf("removed %d in all (last step %d), want 15 and a last step of 0", total, n)
	}
	query(t, db, archive.Query{Owner: a, Max: 100}, []int64{}, false)
	query(t, db, archive.Query{Owner: b, Max: 100}, ib[5:], false)
	query(t, db, archive.Query{Owner: b, Max: 100, With: "+15550009001@example.com"}, []int64{ib[6], ib[8]}, false)
	query(t, db, archive.Query{Owner: b, Max: 100, IDs: []int64{ib[4], ib[5]}}, []int64{ib[5]}, false)
}

func testArchivePrefs(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const owner = "+15550009030"
	p, err := db.ArchivePrefs(ctx, owner)
	must(t, err)
	if !reflect.DeepEqual(p, archive.Prefs{Default: archive.Always}) {
		t.Fatalf("default prefs %+v", p)
	}
	want := archive.Prefs{Default: archive.Never, Always: []string{"a@example.com", "b@example.com"}, Never: []string{}}
	must(t, db.SetArchivePrefs(ctx, owner, archive.Prefs{Default: archive.Never, Always: want.Always}))
	p, err = db.ArchivePrefs(ctx, owner)
	must(t, err)
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("prefs %+v, want %+v", p, want)
	}
	want = archive.Prefs{Default: archive.Always, Always: []string{}, Never: []string{"c@example.com"}}
	must(t, db.SetArchivePrefs(ctx, owner, want))
	p, err = db.ArchivePrefs(ctx, owner)
	must(t, err)
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("prefs %+v, want %+v", p, want)
	}
}

// A wiped (recycled) or deleted account's archive and preferences go.
func testArchiveWithAccount(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const a, b, keep = auth.Number("+15550009040"), auth.Number("+15550009041"), "+15550009042"
	for _, n := range []auth.Number{a, b} {
		_, err := db.SetCredentials(ctx, n, creds(1))
		must(t, err)
		archiveFill(t, db, string(n), 100, 3)
		must(t, db.SetArchivePrefs(ctx, string(n), archive.Prefs{Default: archive.Never}))
	}
	archiveFill(t, db, keep, 100, 3)
	must(t, db.WipeAccountData(ctx, a))
	must(t, db.DeleteAccount(ctx, b))
	for _, n := range []auth.Number{a, b} {
		query(t, db, archive.Query{Owner: string(n), Max: 10}, []int64{}, false)
		p, err := db.ArchivePrefs(ctx, string(n))
		must(t, err)
		if p.Default != archive.Always {
			t.Fatalf("prefs of %s survived: %+v", n, p)
		}
	}
	query(t, db, archive.Query{Owner: keep, Max: 10}, []int64{100, 101, 102}, false)
}

// Batches of interleaved parties, ids that arrive out of order across
// batches, conversations longer than a chunk and gaps longer than a
// chunk's span, read by every kind of query in both directions: each page
// is what a plain list of the messages gives.
func testArchiveAgainstModel(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const owner = "+15550009050"
	rng := rand.New(rand.NewPCG(1, 2))
	parties := []string{"+15550009051@example.com", "+15550009052@example.com", "+15550009053@example.com"}
	var all []archive.Message // the model, in id order
	id := archive.FirstID(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC))
	var late []archive.Message
	for batch := 0; batch < 40; batch++ {
		n := 1 + rng.IntN(300)
		if batch%10 == 9 {
			id += archive.FirstID(time.UnixMilli(2500)) // a pause longer than a chunk's span
		}
		msgs := make([]archive.Message, n)
		for i := range msgs {
			id += 1 + int64(rng.IntN(3))
			msgs[i] = archive.Message{Owner: owner, ID: id, With: parties[rng.IntN(len(parties))],
				WithResource: fmt.Sprint("r", rng.IntN(2)), Stanza: fmt.Appendf(nil, "<message><body>%d</body></message>", id)}
		}
		// Ids handed out late: a few of one batch come with the next.
		rng.Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })
		k := rng.IntN(min(len(msgs), 5))
		msgs, late = append(late, msgs[k:]...), msgs[:k]
		must(t, db.AppendArchive(ctx, msgs))
		all = append(all, msgs...)
	}
	must(t, db.AppendArchive(ctx, late))
	all = append(all, late...)
	slices.SortFunc(all, func(a, b archive.Message) int { return int(a.ID - b.ID) })
	model := func(q archive.Query) ([]int64, bool) {
		var sel []int64
		for _, m := range all {
			if (q.With == "" || m.With == q.With) && (q.WithResource == "" || m.WithResource == q.WithResource) &&
				(q.After == 0 || m.ID > q.After) && (q.Before == 0 || m.ID < q.Before) &&
				(len(q.IDs) == 0 || slices.Contains(q.IDs, m.ID)) {
				sel = append(sel, m.ID)
			}
		}
		if len(sel) <= q.Max {
			return sel, false
		}
		if q.Last {
			return sel[len(sel)-q.Max:], true
		}
		return sel[:q.Max], true
	}
	for i := 0; i < 300; i++ {
		q := archive.Query{Owner: owner, Max: 1 + rng.IntN(120), Last: rng.IntN(2) == 0}
		if rng.IntN(2) == 0 {
			q.With = parties[rng.IntN(len(parties))]
			if rng.IntN(3) == 0 {
				q.WithResource = "r1"
			}
		}
		if rng.IntN(2) == 0 {
			q.After = all[rng.IntN(len(all))].ID
		}
		if rng.IntN(2) == 0 {
			q.Before = all[rng.IntN(len(all))].ID
		}
		if rng.IntN(5) == 0 {
			for range 1 + rng.IntN(20) {
				q.IDs = append(q.IDs, all[rng.IntN(len(all))].ID+int64(rng.IntN(2)))
			}
		}
		want, wantMore := model(q)
		page := query(t, db, q, want, wantMore)
		for _, m := range page {
			if want := fmt.Sprintf("<message><body>%d</body></message>", m.ID); string(m.Stanza) != want || m.Owner != owner {
				t.Fatalf("message %d read back as %+v", m.ID, m)
			}
		}
	}
	// Paging through the whole archive, both ways, gives every message once.
	for _, last := range []bool{false, true} {
		var got []int64
		q := archive.Query{Owner: owner, Max: 97, Last: last}
		for range len(all) {
			page, more, err := db.QueryArchive(ctx, q)
			must(t, err)
			ids := pageIDs(page)
			if last {
				got = append(ids, got...)
			} else {
				got = append(got, ids...)
			}
			if !more {
				break
			}
			if last {
				q.Before = ids[0]
			} else {
				q.After = ids[len(ids)-1]
			}
		}
		if !slices.Equal(got, pageIDs(all)) {
			t.Fatalf("paging (last %v) read %d messages, want %d", last, len(got), len(all))
		}
	}
}
