"""Leader election on a coordination.k8s.io Lease, as client-go's: take the Lease when it is free
or expired, renew it every `retry_s`, and give it up on stop so another replica takes over at
once. Updates carry the resourceVersion, so two candidates never both win (409 to the loser)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from wharf_controller.kube.api import LEASE, Api, ApiError

log = logging.getLogger(__name__)
JSON = dict[str, Any]


def _now() -> datetime:
    return datetime.now(UTC)


def _micro(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.strptime(text.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")


class LeaderElector:
    def __init__(
        self,
        api: Api,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_s: int = 15,
        retry_s: float = 2.0,
    ) -> None:
        self.api, self.namespace, self.name, self.identity = api, namespace, name, identity
        self.lease_s, self.retry_s = lease_s, retry_s
        self.leading = asyncio.Event()
        self.lost = asyncio.Event()
        self._stopping = False

    def _spec(self, lease: JSON | None, now: datetime) -> JSON:
        old = (lease or {}).get("spec") or {}
        transitions = int(old.get("leaseTransitions") or 0)
        mine = old.get("holderIdentity") == self.identity
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_s,
            "acquireTime": old.get("acquireTime") if mine else _micro(now),
            "renewTime": _micro(now),
            "leaseTransitions": transitions if mine or not old else transitions + 1,
        }

    async def try_acquire_or_renew(self) -> bool:
        now = _now()
        lease = await self.api.get(LEASE, self.name, self.namespace)
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(None, now),
            }
            try:
                await self.api.request("POST", LEASE.path(self.namespace), body=body)
            except ApiError as exc:
                if exc.status == 409:
                    return False
                raise
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
        duration = int(spec.get("leaseDurationSeconds") or self.lease_s)
        expired = renewed is None or renewed + timedelta(seconds=duration) < now
        if holder and holder != self.identity and not expired:
            return False
        lease["spec"] = self._spec(lease, now)
        try:
            await self.api.request("PUT", LEASE.path(self.namespace, self.name), body=lease)
        except ApiError as exc:
            if exc.status == 409:
                return False  # another candidate wrote first
            raise
        return True

    async def run(self) -> None:
        """Campaign until leading, then renew; returns when leadership is lost."""
        while not self._stopping:
            try:
                won = await self.try_acquire_or_renew()
            except ApiError as exc:
                log.warning("lease %s: %s", self.name, exc)
                won = False
            if won and not self.leading.is_set():
                log.info("lease %s: %s is the leader", self.name, self.identity)
                self.leading.set()
            elif not won and self.leading.is_set():
                log.warning("lease %s: %s lost the lease", self.name, self.identity)
                self.leading.clear()
                self.lost.set()
                return
            await asyncio.sleep(self.retry_s)

    async def release(self) -> None:
        """Give the Lease up (on a clean stop) so the next candidate need not wait it out."""
        self._stopping = True
        if not self.leading.is_set():
            return
        lease = await self.api.get(LEASE, self.name, self.namespace)
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        lease["spec"] = {**lease["spec"], "holderIdentity": None, "leaseDurationSeconds": 1}
        try:
            await self.api.request("PUT", LEASE.path(self.namespace, self.name), body=lease)
        except ApiError as exc:
            log.warning("lease %s: release failed: %s", self.name, exc)
        self.leading.clear()
