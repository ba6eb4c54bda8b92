# The eks module, AWS mocked: the endpoint is open only to the given CIDRs, spot is opt-in, the
# Cluster Autoscaler may scale only this cluster's groups.

mock_provider "aws" {
  source = "../../mocks"
}

variables {
  name                   = "test"
  vpc_id                 = "vpc-1"
  private_subnet_ids     = ["subnet-1", "subnet-2"]
  node_security_group_id = "sg-nodes"
  kms_key_arn            = "arn:aws:kms:eu-west-1:000000000000:key/test"
  public_access_cidrs    = ["198.51.100.0/24"]
}

run "defaults" {
  command = plan

  assert {
    condition     = aws_eks_cluster.this.vpc_config[0].endpoint_public_access && aws_eks_cluster.this.vpc_config[0].public_access_cidrs == toset(["198.51.100.0/24"])
    error_message = "the public endpoint must be open to the given CIDRs only"
  }

  assert {
    condition     = length(aws_eks_node_group.spot) == 0
    error_message = "no spot node group by default: nothing in the chart tolerates it"
  }

  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.autoscaler.statement :
      contains(s.actions, "autoscaling:SetDesiredCapacity")
      && anytrue([for c in s.condition : c.variable == "aws:ResourceTag/k8s.io/cluster-autoscaler/test" && contains(c.values, "owned")])
    ])
    error_message = "the Cluster Autoscaler may set capacity only on this cluster's groups"
  }

  assert {
    condition = alltrue([
      for key, account in {
        ebs_csi    = "system:serviceaccount:kube-system:ebs-csi-controller-sa"
        autoscaler = "system:serviceaccount:kube-system:cluster-autoscaler"
      } :
      anytrue([for c in data.aws_iam_policy_document.irsa_assume[key].statement[0].condition : contains(c.values, account) && length(c.values) == 1])
    ])
    error_message = "each IRSA role is assumed by its own service account only"
  }

  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.cluster_encryption.statement :
      contains(s.actions, "kms:Decrypt") && contains(s.resources, "arn:aws:kms:eu-west-1:000000000000:key/test")
    ])
    error_message = "the cluster role must be able to use the Secrets encryption key"
  }
}

run "spot_on_request" {
  command = plan

  variables {
    spot_enabled = true
  }

  assert {
    condition     = length(aws_eks_node_group.spot) == 1 && aws_eks_node_group.spot[0].capacity_type == "SPOT"
    error_message = "spot_enabled creates one tainted spot group"
  }
}
