"""The Evaluation servicer: thin, like the registry's. Sites fetch jobs, candidate weights and
report scores; operators list jobs, ask for versions to be scored, and read the recommendation."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from common import serde
from common.pb.mmlego.v1 import evaluation_pb2 as epb
from common.pb.mmlego.v1 import evaluation_pb2_grpc as epb_grpc
from common.pb.mmlego.v1 import registry_pb2 as pb

from .auth import caller
from .errors import as_invalid
from .metrics import Metrics
from .registry import Registry
from .servicer import call_deadline, streamed, translated


class EvaluationServicer(epb_grpc.EvaluationServicer):
    def __init__(self, registry: Registry, metrics: Metrics) -> None:
        self.registry = registry
        self.metrics = metrics

    # ---- sites ------------------------------------------------------------------------------
    @translated
    def PendingEvaluations(
        self, request: epb.PendingEvaluationsRequest, context: grpc.ServicerContext
    ) -> epb.PendingEvaluationsResponse:
        if request.task_id:
            self.registry.task(request.task_id)  # NOT_FOUND for an unknown task
        jobs = self.registry.evaluations.pending(caller(), request.task_id)
        return epb.PendingEvaluationsResponse(jobs=[serde.job_to_pb(j) for j in jobs])

    @streamed
    def DownloadCandidate(
        self, request: epb.DownloadCandidateRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.DownloadChunk]:
        sha = self.registry.evaluations.candidate_blob(
            caller(), request.job_id, request.candidate_id
        )
        for offset, data in self.registry.read_chunks(sha, request.offset):
            if not context.is_active():
                return
            yield pb.DownloadChunk(data=data, offset=offset)

    @translated
    def ReportEvaluation(
        self, request: epb.EvaluationReport, context: grpc.ServicerContext
    ) -> epb.EvaluationReceipt:
        with as_invalid():
            report = serde.report_from_pb(request)
        job = self.registry.evaluations.job(report.job_id).job
        kept = self.registry.evaluations.report(caller(), report, self.registry.task(job.task_id))
        self.metrics.evaluation_reports.labels("declined" if report.declined else "scored").inc()
        return epb.EvaluationReceipt(job_id=report.job_id, accepted=kept)

    # ---- operators --------------------------------------------------------------------------
    @translated
    def ListEvaluations(
        self, request: epb.ListEvaluationsRequest, context: grpc.ServicerContext
    ) -> epb.ListEvaluationsResponse:
        statuses = self.registry.evaluations.statuses(request.task_id, request.open_only)
        return epb.ListEvaluationsResponse(evaluations=[serde.status_to_pb(s) for s in statuses])

    @translated
    def Evaluate(
        self, request: epb.EvaluateRequest, context: grpc.ServicerContext
    ) -> epb.EvaluationResult:
        wait = call_deadline(self.registry, request.deadline_s, context)
        status, results = self.registry.evaluate(
            list(request.model_ids), wait, caller().name, stop=lambda: not context.is_active()
        )
        return epb.EvaluationResult(
            status=serde.status_to_pb(status),
            results=[
                serde.result_to_pb(c, results[c.candidate_id])
                for c in status.job.candidates
                if c.candidate_id in results
            ],
        )

    @translated
    def GetRecommended(
        self, request: epb.GetRecommendedRequest, context: grpc.ServicerContext
    ) -> epb.Recommendation:
        return serde.recommendation_to_pb(self.registry.recommended(request.task_id, request.site))
