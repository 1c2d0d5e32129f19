// Logs and telemetry: a Log Analytics workspace and a workspace-based Application Insights
// with local (instrumentation-key) auth off, so only Entra-authenticated telemetry is accepted.
// Two alerts: failed function executions (failed reconciles, rejected-by-bug tickets) and
// dead-lettered messages on either queue.
param logAnalyticsName string
param applicationInsightsName string
param location string
param tags object
@description('Principal id of the reconciler\'s managed identity (publishes telemetry).')
param reconcilerPrincipalId string
@description('Resource id of the Service Bus namespace whose dead-letter count is watched.')
param serviceBusNamespaceId string
@description('Who is told when an alert fires; empty: alerts only show in the portal.')
param alertEmail string = ''

var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
    features: {
      disableLocalAuth: true
    }
  }
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true // ingestion needs an Entra token (APPLICATIONINSIGHTS_AUTHENTICATION_STRING)
  }
}

// The app's identity may publish telemetry to this component, and nothing else.
resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, reconcilerPrincipalId, monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: reconcilerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-${applicationInsightsName}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'wifrecon'
    enabled: true
    emailReceivers: [
      {
        name: 'operators'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var actionGroupIds = empty(alertEmail) ? [] : [
  actionGroup.id
]

// Any failed function execution (a reconcile that raised, a ticket the app could not
// process) within 15 minutes. Each failure is retried by Service Bus, so one firing means
// look at the status table and the traces, not necessarily an outage.
resource failedExecutions 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'failed-executions-${applicationInsightsName}'
  location: location
  tags: tags
  properties: {
    displayName: 'WIF Reconciler: failed function executions'
    description: 'A reconcile or ticket execution failed; see AppRequests/AppExceptions and the federationstatus table.'
    severity: 2
    enabled: true
    scopes: [
      logAnalytics.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: 'AppRequests | where _ResourceId =~ "${applicationInsights.id}" and Success == false | summarize failures = count() by OperationName'
          timeAggregation: 'Total'
          metricMeasureColumn: 'failures'
          dimensions: [
            {
              name: 'OperationName'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: actionGroupIds
    }
  }
}

// A message that exhausted its deliveries or expired: a ticket or a reconcile that needs
// an operator (inspect and replay or discard the dead-letter sub-queue).
resource deadLetters 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'dead-lettered-${applicationInsightsName}'
  location: 'global'
  tags: tags
  properties: {
    description: 'Messages were dead-lettered on the requests or reconcile queue.'
    severity: 2
    enabled: true
    scopes: [
      serviceBusNamespaceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'deadLettered'
          metricName: 'DeadletteredMessages'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Maximum'
        }
      ]
    }
    actions: empty(alertEmail) ? [] : [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}

output applicationInsightsName string = applicationInsights.name
output connectionString string = applicationInsights.properties.ConnectionString
