package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The io_uring ABI this reader uses (linux/io_uring.h), written out:
// x/sys/unix has the system call numbers but not these structures.
type (
	sqRingOffsets struct {
		head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
		userAddr                                                        uint64
	}
	cqRingOffsets struct {
		head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
		userAddr                                                        uint64
	}
	uringParams struct {
		sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
		resv                                                                   [3]uint32
		sqOff                                                                  sqRingOffsets
		cqOff                                                                  cqRingOffsets
	}
	uringSQE struct {
		opcode, flags     uint8
		ioprio            uint16
		fd                int32
		off, addr         uint64
		len, opFlags      uint32
		userData          uint64
		bufGroup, person  uint16
		spliceFdIn        int32
		addr3, reserved64 uint64
	}
	uringCQE struct {
		userData uint64
		res      int32
		flags    uint32
	}
	uringBuf struct {
		addr uint64
		len  uint32
		bid  uint16
		resv uint16 // of entry 0: the ring's tail
	}
	bufReg struct {
		ringAddr    uint64
		ringEntries uint32
		bgid, flags uint16
		resv        [3]uint64
	}
)

const (
	opRecv            = 27     // IORING_OP_RECV
	recvMultishot     = 1 << 1 // IORING_RECV_MULTISHOT, in ioprio
	sqeBufferSelect   = 1 << 5 // IOSQE_BUFFER_SELECT
	cqeFBuffer        = 1 << 0 // IORING_CQE_F_BUFFER: the buffer id is in flags>>16
	cqeFMore          = 1 << 1 // IORING_CQE_F_MORE: the multishot receive goes on
	setupCoopTaskrun  = 1 << 8
	setupSingleIssuer = 1 << 12
	setupDeferTaskrun = 1 << 13 // completions run inside io_uring_enter, on this thread
	enterGetEvents    = 1 << 0
	registerPbufRing  = 22
	offSQEs           = 0x10000000
	ringEntries       = 4096
	nBufs             = 4096 // a power of two
	bufSize           = 4096
	bufGroup          = 1
)

// readUring arms one multishot receive per socket on a ring whose
// completions run inside io_uring_enter on this (locked) thread, so one
// system call takes in every socket that became readable since the last.
func readUring(ctx context.Context, fds []int, m *meter) error {
	p := uringParams{flags: setupSingleIssuer | setupDeferTaskrun | setupCoopTaskrun}
	r, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, ringEntries, uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return fmt.Errorf("io_uring_setup: %w", errno)
	}
	ring := int(r)
	defer unix.Close(ring)
	size := max(int(p.sqOff.array+p.sqEntries*4), int(p.cqOff.cqes+p.cqEntries*uint32(unsafe.Sizeof(uringCQE{}))))
	rings, err := unix.Mmap(ring, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("mmap rings: %w", err)
	}
	defer unix.Munmap(rings)
	sqeMem, err := unix.Mmap(ring, offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(uringSQE{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("mmap sqes: %w", err)
	}
	defer unix.Munmap(sqeMem)
	u32 := func(off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&rings[off])) }
	sqTail, sqMask := u32(p.sqOff.tail), *u32(p.sqOff.ringMask)
	cqHead, cqTail, cqMask := u32(p.cqOff.head), u32(p.cqOff.tail), *u32(p.cqOff.ringMask)
	sqes := unsafe.Slice((*uringSQE)(unsafe.Pointer(&sqeMem[0])), p.sqEntries)
	cqes := unsafe.Slice((*uringCQE)(unsafe.Pointer(&rings[p.cqOff.cqes])), p.cqEntries)

	// The provided buffers: a page-aligned ring of nBufs entries the
	// kernel takes a buffer from per receive; each goes back once counted.
	bufMem, err := unix.Mmap(-1, 0, nBufs*int(unsafe.Sizeof(uringBuf{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("mmap buffer ring: %w", err)
	}
	defer unix.Munmap(bufMem)
	bufs := unsafe.Slice((*uringBuf)(unsafe.Pointer(&bufMem[0])), nBufs)
	data := make([]byte, nBufs*bufSize)
	var tail uint16
	give := func(bid uint16) {
		b := &bufs[tail&(nBufs-1)]
		b.addr, b.len, b.bid = uint64(uintptr(unsafe.Pointer(&data[int(bid)*bufSize]))), bufSize, bid
		tail++
	}
	publish := func() { // entry 0's bid and the tail share an aligned word
		atomic.StoreUint32((*uint32)(unsafe.Pointer(&bufMem[12])), uint32(tail)<<16|uint32(bufs[0].bid))
	}
	for i := range nBufs {
		give(uint16(i))
	}
	publish()
	reg := bufReg{ringAddr: uint64(uintptr(unsafe.Pointer(&bufMem[0]))), ringEntries: nBufs, bgid: bufGroup}
	if _, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(ring), registerPbufRing, uintptr(unsafe.Pointer(&reg)), 1, 0, 0); errno != 0 {
		return fmt.Errorf("register buffer ring: %w", errno)
	}

	queued := uint32(0)
	enter := func(wait uint32) error {
		flags := uintptr(0)
		if wait > 0 {
			flags = enterGetEvents
		}
		for {
			_, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(ring), uintptr(queued), uintptr(wait), flags, 0, 0)
			switch errno {
			case 0:
				queued = 0
				return nil
			case unix.EINTR:
				if ctx.Err() != nil {
					return nil
				}
				continue
			}
			return fmt.Errorf("io_uring_enter: %w", errno)
		}
	}
	arm := func(fd int) error {
		t := atomic.LoadUint32(sqTail)
		i := t & sqMask
		sqes[i] = uringSQE{opcode: opRecv, flags: sqeBufferSelect, ioprio: recvMultishot, fd: int32(fd), userData: uint64(fd), bufGroup: bufGroup}
		*u32(p.sqOff.array + i*4) = i
		atomic.StoreUint32(sqTail, t+1)
		if queued++; queued == p.sqEntries/2 {
			return enter(0)
		}
		return nil
	}
	for _, fd := range fds {
		if err := arm(fd); err != nil {
			return err
		}
	}
	for ctx.Err() == nil {
		if err := enter(1); err != nil {
			return err
		}
		h, t := atomic.LoadUint32(cqHead), atomic.LoadUint32(cqTail)
		for ; h != t; h++ {
			c := cqes[h&cqMask]
			if c.res > 0 && c.flags&cqeFBuffer != 0 {
				bid := uint16(c.flags >> 16)
				m.count(data[int(bid)*bufSize : int(bid)*bufSize+int(c.res)])
				give(bid)
			}
			if c.flags&cqeFMore != 0 {
				continue
			}
			switch {
			case c.res == 0:
				return errEOF
			case c.res == -int32(unix.ENOBUFS) || c.res > 0:
				// Out of buffers, or the kernel ended the receive: again.
				if err := arm(int(c.userData)); err != nil {
					return err
				}
			default:
				return fmt.Errorf("recv: %w", unix.Errno(-c.res))
			}
		}
		atomic.StoreUint32(cqHead, h)
		publish()
		if !m.tick(time.Now()) {
			return nil
		}
	}
	return nil
}
