"""Replica ports are picked below the kernel's ephemeral range, where outgoing connections
cannot take them between the pick and the replica's own bind."""

from __future__ import annotations

import random
import socket

from wharf_local import ports


def test_the_range_is_read_from_the_kernels_text_or_defaults() -> None:
    assert ports.ephemeral_range("32768\t60999\n") == (32768, 60999)
    assert ports.ephemeral_range("1024 65535") == (1024, 65535)
    for text in (None, "", "garbage", "5 4", "0 10", "1 70000"):
        assert ports.ephemeral_range(text) == ports.DEFAULT_EPHEMERAL


def test_listeners_go_just_below_the_ephemeral_range() -> None:
    assert ports.listener_range((32768, 60999)) == range(22768, 32768)
    assert ports.listener_range((5000, 60999)) == range(1024, 5000)
    # no room below: the kernel's own pick is used instead
    assert ports.listener_range((1500, 65535)) is None


def test_a_taken_port_is_skipped_and_the_fallback_is_the_last_resort() -> None:
    taken = {22768, 22769}
    rng = random.Random(1)
    small = range(22768, 22771)
    assert ports.pick_port(small, lambda p: p not in taken, rng, lambda: -1) == 22770
    assert ports.pick_port(small, lambda p: False, rng, lambda: -1) == -1
    assert ports.pick_port(None, lambda p: True, rng, lambda: -2) == -2


def test_free_port_is_outside_this_kernels_ephemeral_range_and_bindable() -> None:
    low, high = ports.ephemeral_range(ports._read_range())
    port = ports.free_port()
    if ports.listener_range((low, high)) is not None:
        assert not low <= port <= high
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))


def test_a_port_in_use_is_not_picked() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        held = s.getsockname()[1]
        assert not ports._bindable(held)


def test_a_port_handed_out_is_not_handed_out_again_before_it_is_bound() -> None:
    # none of these is bound: each is only checked free, as a replica's ports are until its
    # process starts; a repeat would make one of two children fail to bind at every restart
    picked = [ports.free_port() for _ in range(500)]
    assert len(set(picked)) == len(picked)


def test_the_ports_handed_out_are_forgotten_after_a_while() -> None:
    handed_out = {1: 0.0, 2: 100.0, 3: 250.0}
    ports.forget_expired(handed_out, now=250.0, held_s=200.0)
    assert handed_out == {2: 100.0, 3: 250.0}
