"""Federation plumbing shared by the ServerApp, the ClientApp and the strategies."""
