"""The Flower ClientApp of a site (run by its SuperNode for every message): it only wraps the
handlers of :mod:`site_client.fuse_client`. The node config names the site's site.toml (on
Flower's simulation engine, the run's partition file does)."""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from common.fuse.messages import DescribeQuery
from common.processes import give_back_memory

from . import fuse_client

app = ClientApp()


@app.query(DescribeQuery.action)
def describe(msg: Message, context: Context) -> Message:
    return Message(
        fuse_client.describe(fuse_client.node_settings(context.node_config, context.run_config)),
        reply_to=msg,
    )


@app.train()
def train(msg: Message, context: Context) -> Message:
    try:
        return Message(
            fuse_client.train(
                msg.content, fuse_client.node_settings(context.node_config, context.run_config)
            ),
            reply_to=msg,
        )
    finally:
        # on Flower's simulation engine this process serves the next site's round: the model's
        # memory goes back
        give_back_memory()
