//go:build !linux

package main

import (
	"context"
	"errors"
)

var errLinuxOnly = errors.New("epoll and io_uring are Linux's")

func readEpoll(context.Context, []int, *meter) error { return errLinuxOnly }
func readUring(context.Context, []int, *meter) error { return errLinuxOnly }

func setNonblock(int) error { return errLinuxOnly }
