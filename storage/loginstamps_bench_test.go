package storage_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"dialtone/auth"
	"dialtone/storage"
)

// BenchmarkRecordLoginConcurrent is 25 logins at once stamping their
// accounts (issue 15: one transaction each serialised logins).
func BenchmarkRecordLoginConcurrent(b *testing.B) {
	db, err := storage.Open(context.Background(), "", b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for i := range 64 {
		db.SetCredentials(context.Background(), auth.Number(fmt.Sprintf("+8210200%05d", i)), auth.Credentials{})
	}
	var k atomic.Int64
	b.SetParallelism(25)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := k.Add(1) % 64
			if err := db.RecordLogin(context.Background(), auth.Number(fmt.Sprintf("+8210200%05d", n)), time.Now()); err != nil {
				b.Error(err)
			}
		}
	})
}
