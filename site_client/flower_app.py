"""The Flower ClientApp of a site (run by its SuperNode for every message): it only wraps the
handlers of :mod:`site_client.fuse_client`. The node config names the site's site.toml."""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from . import fuse_client

app = ClientApp()


@app.query("describe")
def describe(msg: Message, context: Context) -> Message:
    return Message(fuse_client.describe(dict(context.node_config)), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    return Message(fuse_client.train(msg.content, dict(context.node_config)), reply_to=msg)
