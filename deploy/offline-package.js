'use strict';

// Lets `serverless package` run with no AWS credentials.
//
// Packaging a layer asks CloudFormation for the deployed stack, to reuse an identical
// layer already uploaded; without credentials that call fails before any template is
// written. For the `package` command alone, this plugin skips that comparison, which
// is what happens anyway when no stack exists yet. `deploy` keeps it.
class OfflinePackage {
  constructor(serverless) {
    this.serverless = serverless;
    this.hooks = {
      'before:package:compileLayers': () => this.skipLayerComparison(),
    };
  }

  skipLayerComparison() {
    const commands = (this.serverless.processedInput && this.serverless.processedInput.commands) || [];
    if (commands[0] !== 'package') return;
    for (const plugin of this.serverless.pluginManager.plugins) {
      if (plugin && typeof plugin.compareWithLastLayer === 'function') {
        plugin.compareWithLastLayer = async () => undefined;
      }
    }
  }
}

module.exports = OfflinePackage;
