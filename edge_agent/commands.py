"""The agent's command consumer: JetStream → verify → decide → execute → report → ack.

The agent reads its own durable consumer (`agent-<node_id>` on SENTINEL_COMMANDS,
created by the hub), one message at a time. After `Verifier` (size, envelope,
signature, decode, time, audience) come, in order: the journal (a verified id seen
before is a replay, unless it is the same message delivered again, whose recorded
result is re-reported), the catalogue (unknown action, bad parameters, a
cluster-scoped action fanned out by selector), local policy (the allow-list), the
executor's own check, and then the executor itself — journalled before it starts.

Every outcome is published as a `CommandResult` on `sentinel.results.<node_id>`
(the hub turns it into state and one CloudEvent) and acknowledged only after the
result's PubAck: a crash before that redelivers the message, and the journal makes
the redelivery harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import nats
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client import CollectorRegistry, Counter, Gauge

from edge_agent.actions import executor_for
from edge_agent.actions.base import ActionContext, Outcome
from edge_agent.audit_shipper import AuditShipper
from edge_agent.backoff import Backoff
from edge_agent.enforcement import Enforcement
from edge_agent.journal import CommandJournal
from edge_agent.trust import TrustStore
from edge_agent.verifier import VerifiedCommand, Verifier
from sentinel import actions, subjects
from sentinel.durations import format_time, timestamp_now
from sentinel.errors import InvalidArgument
from sentinel.events import build_event
from sentinel.nats_tls import client_ssl_context, wants_tls
from sentinel.refusals import CommandRefused, ExecutionFailed, Reason
from sentinel.tasks import cancel_and_wait, raise_if_cancelling
from sentinel.tls import TlsFiles
from sentinel.v1 import command_pb2

log = logging.getLogger(__name__)

# A key the agent does not know may be newer than its keyset (a rotation: the keyset comes
# over the hub stream, the command over NATS, and either may arrive first). Ask again later:
# without limit until the hub confirmed our keyset, then for a few deliveries.
DEFER_UNKNOWN_KEY_S = 2.0
DEFER_UNKNOWN_KEY_DELIVERIES = 2
# How often the agent looks at its policy's expiry when no command arrives: it enters
# safe mode (and says so) at most this long after the bundle expired.
POLICY_CHECK_S = 5.0
# Reconnects within one NATS session before it ends and a new one starts afresh.
RECONNECT_ATTEMPTS = 5
# Tell JetStream a long action is still running, well inside its ack wait (60 s).
IN_PROGRESS_EVERY_S = 15.0

S = command_pb2
_REFUSAL_STATE = {Reason.EXPIRED: S.COMMAND_STATE_EXPIRED}


class CommandMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.refused = Counter(
            "sentinel_agent_commands_refused_total",
            "Commands this agent refused before anything ran, by reason code.",
            ["reason"],
            registry=registry,
        )
        self.completed = Counter(
            "sentinel_agent_commands_completed_total",
            "Commands whose executor ran, by action and state (executed, planned, failed, "
            "interrupted).",
            ["action", "state"],
            registry=registry,
        )
        self.deferred = Counter(
            "sentinel_agent_commands_deferred_total",
            "Commands signed by a key not yet known, put back until the keyset is in sync.",
            registry=registry,
        )
        for reason in Reason:
            if reason not in (Reason.EXECUTION_FAILED, Reason.INTERRUPTED):
                self.refused.labels(reason=reason.value)
        self.policy_version = Gauge(
            "sentinel_agent_policy_version",
            "Version of the policy bundle this agent enforces (1: the built-in default).",
            registry=registry,
        )
        self.safe_mode = Gauge(
            "sentinel_agent_policy_safe_mode",
            "1 while the agent's policy bundle has expired: only safe actions run.",
            registry=registry,
        )


class CommandRunner:
    def __init__(
        self,
        node_id: str,
        *,
        verifier: Verifier,
        trust: TrustStore,
        journal: CommandJournal,
        enforcement: Enforcement,
        context: ActionContext,
        metrics: CommandMetrics,
        nats_url: Callable[[], str],
        tls: Callable[[], TlsFiles],
        audit: AuditShipper | None = None,
    ) -> None:
        self._node_id = node_id
        # The agent's audit journal (and its shipper, run during each NATS session).
        self._audit = audit
        self._verifier = verifier
        self._trust = trust
        self._journal = journal
        self._enforcement = enforcement
        self._context = context
        self.metrics = metrics
        self._nats_url = nats_url
        # Called at each (re)connect: a rotated certificate is used from the next one on.
        self._tls = tls
        self._actions = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sentinel-action")
        self._backoff = Backoff(0.5, 15.0)
        self.consuming = asyncio.Event()
        self.handled = 0
        self._safe_mode_announced = ""

    async def run(self) -> None:
        """Consume commands for the agent's whole life, reconnecting as needed."""
        try:
            while True:
                url = self._nats_url()
                if url:
                    try:
                        await self._session(url)
                    except (nats.errors.Error, OSError, TimeoutError) as exc:
                        log.warning("command consumer: %r; retrying", exc)
                    except Exception:  # a bug must not end command handling for good
                        log.exception("command consumer failed; retrying")
                self.consuming.clear()
                raise_if_cancelling()
                await asyncio.sleep(self._backoff.next_delay_s())
        finally:
            self._actions.shutdown(wait=False, cancel_futures=True)

    async def _session(self, url: str) -> None:
        # A tls:// NATS (the hub's embedded one) knows this node by its certificate and lets
        # it read replies under its own inbox prefix only; a nats:// one is a user's own.
        nc = await nats.connect(
            url,
            name=f"sentinel-agent-{self._node_id}",
            connect_timeout=5,
            # nats-py reconnects with this session's TLS context and URL: after a few failed
            # tries the session ends, and the next one uses the current certificate (it may
            # have been rotated) and the URL the hub announced last.
            max_reconnect_attempts=RECONNECT_ATTEMPTS,
            reconnect_time_wait=1,
            error_cb=_quiet,
            inbox_prefix=subjects.node_inbox_prefix(self._node_id),
            tls=client_ssl_context(self._tls()) if wants_tls(url) else None,
        )
        shipping: list[asyncio.Task[None]] = []
        try:
            js = nc.jetstream(timeout=10)
            if self._audit is not None:
                shipping.append(asyncio.create_task(self._audit.run(js), name="agent-audit-ship"))
            subscription = await self._bind(js)
            self._backoff.reset()
            await self._report_interrupted(js)
            self.consuming.set()
            log.info("receiving commands from %s", url)
            while True:
                await self._watch_policy(js)
                try:
                    messages = await subscription.fetch(16, timeout=POLICY_CHECK_S)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                for message in messages:
                    await self.handle(js, message)
        finally:
            for task in shipping:
                task.cancel()
            with contextlib.suppress(Exception):
                await nc.close()
            # Last: while this session is being cancelled, the wait re-raises that cancel.
            await cancel_and_wait(*shipping)

    async def _bind(self, js: JetStreamContext) -> Any:
        name = subjects.command_consumer(self._node_id)
        while True:
            try:
                return await js.pull_subscribe_bind(name, stream=subjects.COMMANDS_STREAM)
            except NotFoundError:
                log.info("waiting for the hub to create consumer %s", name)
                await asyncio.sleep(self._backoff.next_delay_s())

    async def _watch_policy(self, js: JetStreamContext) -> None:
        """Export the policy state; announce entering safe mode (once per bundle)."""
        policies = self._enforcement.policies
        self.metrics.policy_version.set(policies.version)
        safe = self._enforcement.safe_mode()
        self.metrics.safe_mode.set(1 if safe else 0)
        if not safe or self._safe_mode_announced == policies.bundle.sha256:
            return
        log.warning(
            "policy version %d expired at %s: safe mode, only %s may run",
            policies.version,
            policies.bundle.expires_at.isoformat(),
            ", ".join(sorted(policies.bundle.safe_actions)) or "nothing",
        )
        event = build_event(
            "policy",
            "safe_mode",
            self._node_id,
            {
                "policy_version": policies.version,
                "expired_at": format_time(policies.bundle.expires_at),
                "safe_actions": sorted(policies.bundle.safe_actions),
                "reason": "POLICY_EXPIRED",
            },
            source=f"sentinel-agent/{self._node_id}",
        )
        msg_id = f"{self._node_id}/safe_mode/{policies.bundle.sha256}"
        await js.publish(
            event.subject, event.payload, headers={**event.headers, "Nats-Msg-Id": msg_id}
        )
        self._safe_mode_announced = policies.bundle.sha256

    async def _report_interrupted(self, js: JetStreamContext) -> None:
        """Commands that were running when the agent died: their effect is unknown."""
        for entry in self._journal.unfinished():
            result = self._result(
                entry.command_id,
                entry.stream_seq,
                S.COMMAND_STATE_INTERRUPTED,
                Reason.INTERRUPTED,
                "the agent stopped while this command was executing; its effect is unknown "
                "and it is not run again",
            )
            data = result.SerializeToString()
            self._journal.finish(entry.command_id, entry.stream_seq, entry.not_after_s, data)
            self.metrics.completed.labels(action="unknown", state="interrupted").inc()
            await self._record_outcome(result)
            await self._publish(js, data)

    async def handle(self, js: JetStreamContext, message: Msg) -> None:
        seq = message.metadata.sequence.stream
        try:
            # Verification persists the agent clock and journal steps fsync: on the
            # action thread, so the event loop (hub link, telemetry) never waits on a disk.
            command = await self._verify(message.data)
        except CommandRefused as refusal:
            if refusal.code is Reason.UNKNOWN_KEY and (
                not self._trust.synced
                or message.metadata.num_delivered <= DEFER_UNKNOWN_KEY_DELIVERIES
            ):
                self.metrics.deferred.inc()
                await message.nak(delay=DEFER_UNKNOWN_KEY_S)
                return
            data = await self._refused_before_journal(refusal, seq, message)
        else:
            data = await self._decide(command, seq, message)
        await self._publish(js, data)
        await message.ack()
        self.handled += 1

    async def _verify(self, data: bytes) -> VerifiedCommand:
        try:
            verified: VerifiedCommand = await self._in_thread(self._verifier.verify, data)
        except CommandRefused:
            raise
        except Exception as exc:  # input that trips a bug must not stop the consumer
            log.exception("verifier error")
            raise CommandRefused(Reason.MALFORMED, f"verification error: {exc!r}") from exc
        return verified

    async def _refused_before_journal(
        self, refusal: CommandRefused, seq: int, message: Msg
    ) -> bytes:
        command_id = refusal.details.get("command_id", "")
        entry = self._journal.lookup(command_id) if command_id else None
        if entry is not None and entry.stream_seq == seq and entry.result is not None:
            return entry.result  # delivered again after it expired: same outcome as before
        self.metrics.refused.labels(reason=refusal.reason).inc()
        log.warning("refused command %s: %s %s", command_id or "?", refusal.reason, refusal)
        result = self._result(
            command_id,
            seq,
            _REFUSAL_STATE.get(refusal.code, S.COMMAND_STATE_REFUSED),
            refusal.code,
            refusal.message,
        )
        if not command_id:
            msg_id = (message.headers or {}).get("Nats-Msg-Id", "")
            result.claimed_command_id = msg_id.partition("/")[0][:64]
        await self._record_outcome(result)
        return result.SerializeToString()

    async def _decide(self, command: VerifiedCommand, seq: int, message: Msg) -> bytes:
        payload = command.payload
        entry = self._journal.lookup(payload.command_id)
        if entry is not None:
            if entry.stream_seq == seq and entry.result is not None:
                return entry.result
            self.metrics.refused.labels(reason=Reason.REPLAYED).inc()
            log.warning("refused command %s: REPLAYED", payload.command_id)
            replay = self._result(
                payload.command_id,
                seq,
                S.COMMAND_STATE_REFUSED,
                Reason.REPLAYED,
                f"command {payload.command_id} was already received (stream seq "
                f"{entry.stream_seq}); this copy (seq {seq}) is not run",
            )
            await self._record_outcome(replay, payload.action)
            return replay.SerializeToString()
        not_after_s = command.not_after.timestamp()
        try:
            executor, params = await self._admit(payload)
        except CommandRefused as refusal:
            self.metrics.refused.labels(reason=refusal.reason).inc()
            log.warning("refused command %s: %s %s", payload.command_id, refusal.reason, refusal)
            state, reason, text = S.COMMAND_STATE_REFUSED, refusal.code.value, refusal.message
        except Exception as exc:  # an executor's check broke: nothing ran; say so, once
            log.exception("check of %s failed", payload.action)
            state, reason = S.COMMAND_STATE_FAILED, Reason.EXECUTION_FAILED.value
            text = f"the executor's check failed before anything ran: {exc!r}"
        else:
            state = S.COMMAND_STATE_UNSPECIFIED
        if state == S.COMMAND_STATE_UNSPECIFIED and not await self._intent_recorded(payload, seq):
            self.metrics.refused.labels(reason=Reason.AUDIT_UNAVAILABLE).inc()
            state, reason = S.COMMAND_STATE_REFUSED, Reason.AUDIT_UNAVAILABLE.value
            text = "the audit journal cannot be written, and nothing runs without its intent"
        if state != S.COMMAND_STATE_UNSPECIFIED:
            refused = self._result(payload.command_id, seq, state, reason, text)
            data = refused.SerializeToString()
            await self._in_thread(self._journal.finish, payload.command_id, seq, not_after_s, data)
            await self._record_outcome(refused, payload.action)
            return data
        await self._in_thread(self._journal.begin, payload.command_id, seq, not_after_s)
        result = await self._execute(payload, seq, executor, params, message)
        data = result.SerializeToString()
        await self._in_thread(self._journal.finish, payload.command_id, seq, not_after_s, data)
        await self._record_outcome(result, payload.action)
        return data

    async def _intent_recorded(self, payload: command_pb2.CommandPayload, seq: int) -> bool:
        """The intent, fsynced in the audit journal before the executor may run."""
        mode = S.CommandMode.Name(payload.mode).removeprefix("COMMAND_MODE_").lower()
        details = {"action": payload.action, "mode": mode, "stream_seq": seq}
        details |= {"issuer": payload.issuer, "hub_policy_version": payload.policy_version}
        try:
            await self._record("command.intent", payload.command_id, "begun", "", details)
        except OSError as exc:
            log.error("audit journal refused the intent of %s: %r", payload.command_id, exc)
            return False
        return True

    async def _record_outcome(self, result: command_pb2.CommandResult, action: str = "") -> None:
        """`command.<state>` in the audit journal; a disk that refuses it is logged (the
        outcome stands, and is reported to the hub, which records it too)."""
        state = S.CommandState.Name(result.state).removeprefix("COMMAND_STATE_").lower()
        details: dict[str, Any] = {"stream_seq": result.stream_seq, "message": result.message}
        if action:
            details["action"] = action
        if result.claimed_command_id:
            details["claimed_command_id"] = result.claimed_command_id
        try:
            await self._record(f"command.{state}", result.command_id, state, result.reason, details)
        except OSError as exc:
            log.error("audit journal refused the outcome of %s: %r", result.command_id, exc)

    async def _record(
        self, action: str, target: str, outcome: str, reason: str, details: dict[str, Any]
    ) -> None:
        """Append on the action thread (it fsyncs), then wake the shipper."""
        if self._audit is None:
            return
        append = functools.partial(
            self._audit.journal.append,
            action,
            target=target,
            outcome=outcome,
            reason=reason,
            policy_version=self._enforcement.policies.version,
            details=details,
        )
        await self._in_thread(append)
        self._audit.changed.set()

    async def _admit(
        self, payload: command_pb2.CommandPayload
    ) -> tuple[Any, dict[str, actions.ParamValue]]:
        spec = actions.CATALOGUE.get(payload.action)
        if spec is None:
            raise CommandRefused(Reason.UNKNOWN_ACTION, f"no action {payload.action!r} here")
        try:
            params = actions.validate_parameters(spec, payload.parameters)
        except InvalidArgument as exc:
            raise CommandRefused(Reason.MALFORMED, exc.message) from exc
        if spec.scope is actions.Scope.CLUSTER and payload.selector:
            raise CommandRefused(
                Reason.BAD_TARGET,
                f"{spec.name} changes one cluster object and must target one node, "
                f"not selector {payload.selector!r}",
            )
        allowed = self._context.settings.allowed_actions
        if allowed is not None and spec.name not in allowed:
            raise CommandRefused(
                Reason.POLICY_DENIED, f"{spec.name} is not in this agent's allowed actions"
            )
        labels = self._context.labels.current()
        keys = await self._in_thread(self._enforcement.judge, payload, params, labels)
        executor = executor_for(spec.name)
        await self._in_thread(executor.check, params, self._context)
        await self._in_thread(self._enforcement.record, keys)
        return executor, params

    async def _execute(
        self,
        payload: command_pb2.CommandPayload,
        seq: int,
        executor: Any,
        params: dict[str, actions.ParamValue],
        message: Msg,
    ) -> command_pb2.CommandResult:
        shadow = payload.mode == S.COMMAND_MODE_SHADOW
        keepalive = asyncio.create_task(_keep_in_progress(message), name="agent-cmd-in-progress")
        try:
            run = executor.plan if shadow else executor.execute
            outcome: Outcome = await self._in_thread(run, params, self._context)
            state, reason, text = (
                (S.COMMAND_STATE_PLANNED if shadow else S.COMMAND_STATE_EXECUTED),
                "",
                outcome.message,
            )
        except ExecutionFailed as failure:
            outcome, state, reason, text = (
                Outcome(),
                S.COMMAND_STATE_FAILED,
                failure.reason,
                str(failure),
            )
        except Exception as exc:  # an executor bug must not take the agent down
            log.exception("executor %s crashed", payload.action)
            outcome, state = Outcome(), S.COMMAND_STATE_FAILED
            reason, text = Reason.EXECUTION_FAILED.value, f"executor error: {exc!r}"
        finally:
            await cancel_and_wait(keepalive)
        state_name = S.CommandState.Name(state).removeprefix("COMMAND_STATE_").lower()
        self.metrics.completed.labels(action=payload.action, state=state_name).inc()
        result = self._result(payload.command_id, seq, state, reason, text)
        result.changes.extend(outcome.changes)
        return result

    async def _in_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._actions, function, *args)

    async def _publish(self, js: JetStreamContext, data: bytes) -> None:
        result = command_pb2.CommandResult.FromString(data)
        owner = result.command_id or f"seq-{result.stream_seq}"
        outcome = f"{S.CommandState.Name(result.state)}:{result.reason}"
        await js.publish(
            subjects.result_subject(self._node_id),
            data,
            stream=subjects.RESULTS_STREAM,
            headers={"Nats-Msg-Id": f"{owner}/{self._node_id}/{outcome}"},
        )

    def _result(
        self,
        command_id: str,
        seq: int,
        state: command_pb2.CommandState,
        reason: str,
        message: str,
    ) -> command_pb2.CommandResult:
        return command_pb2.CommandResult(
            command_id=command_id,
            node_id=self._node_id,
            state=state,
            reason=str(reason),
            message=message,
            finished_at=timestamp_now(),
            stream_seq=seq,
        )

    def close(self) -> None:
        self._journal.close()
        if self._audit is not None:
            self._audit.journal.close()
        self._enforcement.close()


async def _keep_in_progress(message: Msg) -> None:
    while True:
        await asyncio.sleep(IN_PROGRESS_EVERY_S)
        with contextlib.suppress(nats.errors.Error):
            await message.in_progress()


async def _quiet(exc: Exception) -> None:
    log.debug("NATS (commands): %r", exc)
